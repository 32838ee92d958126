"""The rebalance handler: the steps that keep a partition move exactly-once."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from eoflow._transport.consumer import fetch_stable_offsets, group_metadata
from eoflow.errors import EoflowError

from .commit import Committer

__all__ = ["RebalanceHandler"]

log = logging.getLogger(__name__)

#: Tries of the assignment steps (stable offsets, restore) on retriable errors.
ASSIGN_ATTEMPTS = 10


class RebalanceHandler(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called by the consumer's coordinator task around every rebalance.

    On revoke:
      1. Barrier and commit the open interval (abort it if the commit fails), before
         returning: pending offsets are never dropped.
      2. Forget the revoked partitions' fetched records and close their table stores.
      Dispatch stays stopped until the next assignment completes.
    On assign:
      1. Take the new generation and member id (commits use them for fencing).
      2. Fetch the stable committed offsets (waits for pending transactions).
      3. Restore every assigned table partition up to its changelog's end.
      4. Have the dispatcher seek to the committed offsets before its next fetch (it is
         the only task that moves positions) and release dispatch.
    """

    def __init__(self, committer: Committer, consumer: AIOKafkaConsumer,
                 instance_id: str) -> None:
        self._committer = committer
        self._consumer = consumer
        self._instance_id = instance_id
        self.rebalances = 0
        self.fatal: BaseException | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        committer = self._committer
        async with committer.lock:
            committer.dispatcher.hold()
            try:
                await committer.commit()
            except Exception as exc:
                try:
                    await committer.abort(exc, rewind=False)
                except Exception as fatal:  # fenced, or recovery gave up
                    self.fatal = fatal
            await committer.dispatcher.close()
            committer.dispatcher.forget(sorted(revoked))
            committer.tables.revoke({tp.partition for tp in revoked})
            committer.group = None
        if revoked:
            log.info("revoked %d partitions", len(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """aiokafka only logs what a listener raises, so errors are kept in :attr:`fatal`
        (the worker's control loop raises it) or retried, never left to hang dispatch."""
        committer = self._committer
        async with committer.lock:
            self.rebalances += 1
            partitions = sorted(assigned)
            delay = 0.2
            for attempt in range(1, ASSIGN_ATTEMPTS + 1):
                try:
                    await self._assign(partitions)
                    break
                except EoflowError as exc:
                    if not exc.retriable or attempt == ASSIGN_ATTEMPTS:
                        self.fatal = exc
                        return
                    log.warning("assignment step failed (%s); retrying in %.1fs", exc, delay)
                except Exception as exc:
                    self.fatal = exc
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        assert committer.group is not None
        log.info("assigned %d partitions (generation %d): %s", len(assigned),
                 committer.group.generation_id,
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    async def _assign(self, partitions: list[TopicPartition]) -> None:
        committer = self._committer
        settings = committer.settings
        committer.group = group_metadata(self._consumer, settings.app_id, self._instance_id)
        offsets = await fetch_stable_offsets(self._consumer, settings.app_id, partitions)
        await committer.tables.assign({tp.partition for tp in partitions})
        committer.dispatcher.forget(partitions)
        committer.dispatcher.rewind(offsets)
        committer.dispatcher.release()
