"""The rebalance handler: the steps that keep a partition move exactly-once.

The Kafka client sends no heartbeat while ``on_partitions_assigned`` runs, so a restore longer
than the session timeout inside it would expel the member and loop. The assignment
callback therefore only takes the generation and starts an *assignment task*; the task
waits for stable offsets, restores the tables and releases dispatch, while the group
protocol goes on (Kafka Streams restores the same way, with processing held).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from eoflow._transport.base import GroupConsumer, TopicPartition
from eoflow.errors import EoflowError

from .commit import Committer
from .dispatcher import Dispatcher
from .tables import TableManager

__all__ = ["RebalanceHandler"]

log = logging.getLogger(__name__)

#: Starts a task in the worker's task group.
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class RebalanceHandler:
    """Called by the consumer's group task around every rebalance.

    On revoke:
      1. Stop the assignment task if it is still restoring.
      2. Hold dispatch; end the open interval (:meth:`Committer.finish`: commit, or abort
         without rewind) before returning: pending offsets are never dropped.
      3. Forget the revoked partitions' fetched records, close their table stores, drop
         the generation.
    On assign:
      1. Take the new generation and member id (commits use them for fencing).
      2. Start the assignment task and return, so heartbeats go on during a restore:
         a. fetch the stable committed offsets (waits for pending transactions);
         b. restore every assigned table partition up to its changelog's end;
         c. under the lock, have the dispatcher seek to the committed offsets before its
            next fetch (it is the only task that moves positions) and release dispatch.
         A retriable failure (coordinator not available, restore interrupted) is retried
         with a backoff for ``transaction_timeout + session_timeout``, then the worker
         rejoins the group; anything else stops the worker (:attr:`fatal`).
    """

    def __init__(self, committer: Committer, dispatcher: Dispatcher, tables: TableManager,
                 consumer: GroupConsumer, spawn: Spawn) -> None:
        self._committer = committer
        self._dispatcher = dispatcher
        self._tables = tables
        self._consumer = consumer
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self.rebalances = 0
        #: Assignments completed (restored and released).
        self.ready = 0
        #: True while the last assignment is restored and processing (no rebalance or
        #: restore under way): what ``/ready`` reports.
        self.settled = False
        self.fatal: BaseException | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.settled = False
        await self.close()
        committer = self._committer
        async with committer.lock:
            self._dispatcher.hold()
            try:
                await committer.finish(rewind=False)
            except Exception as fatal:  # fenced, or recovery gave up
                self.fatal = fatal
            await self._dispatcher.close()
            self._dispatcher.forget(revoked)
            self._tables.revoke(revoked)
            committer.group = None
            for tp in revoked:
                committer.committed.pop(tp, None)
        if revoked:
            log.info("revoked %d partitions", len(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.settled = False
        self.rebalances += 1
        self._committer.group = self._consumer.group_metadata()
        self._task = self._spawn(self._assign(sorted(assigned)), "assignment")

    async def close(self) -> None:
        """Stop an assignment task still under way (revoke, or the worker stops)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _assign(self, partitions: list[TopicPartition]) -> None:
        settings = self._committer.settings
        budget = settings.transaction_timeout + settings.session_timeout
        deadline = asyncio.get_running_loop().time() + budget
        delay = 0.2
        while True:
            try:
                await self._assign_once(partitions)
                break
            except EoflowError as exc:
                if not exc.retriable:
                    self._stop(exc)
                    return
                if asyncio.get_running_loop().time() > deadline:
                    log.error("assignment did not complete within %.0fs (%s); rejoining the "
                              "group", budget, exc)
                    self._consumer.request_rejoin()
                    return
                log.warning("assignment step failed (%s); retrying in %.1fs", exc, delay)
            except Exception as exc:
                self._stop(exc)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        group = self._committer.group
        self.ready += 1
        self.settled = True
        log.info("assigned %d partitions (generation %s): %s", len(partitions),
                 group.generation_id if group else "?", ", ".join(map(str, partitions)))

    async def _assign_once(self, partitions: list[TopicPartition]) -> None:
        settings = self._committer.settings
        offsets = await self._consumer.committed_offsets(
            partitions, timeout=settings.transaction_timeout + 30.0)
        await self._tables.assign(partitions)
        await self._tables.views_ready()
        async with self._committer.lock:
            self._committer.committed = dict(offsets)
            self._dispatcher.forget(partitions)
            self._dispatcher.rewind(offsets)
            self._dispatcher.release()

    def _stop(self, error: BaseException) -> None:
        log.error("assignment failed: %r", error)
        self.fatal = error
        self._committer.failed(error, True)
