"""The commit cycle: the one place where an interval is committed or aborted.

One :class:`Committer` per worker; a lock makes sure one commit or abort runs at a time
(the commit timer, an agent failure and a rebalance all go through it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from eoflow._settings import Settings
from eoflow._state import fault_point
from eoflow._transport.batching import OutputBatches
from eoflow._transport.consumer import fetch_stable_offsets
from eoflow._transport.producer import SendFuture, TransactionalProducer, translate_kafka_error
from eoflow._transport.protocol import GroupMetadata
from eoflow.errors import (
    AgentError,
    CommitFailedError,
    EoflowError,
    ProducerFencedError,
    SerializationError,
    TransactionAbortedError,
)

from .agents import AgentSupervisor
from .dispatcher import DeadLetter, Dispatcher, PoisonKey
from .lifecycle import IntervalState, Lifecycle
from .stream import current_agent, current_event
from .tables import TableManager

__all__ = ["Committer"]

log = logging.getLogger(__name__)

@dataclass
class _Interval:
    """Bookkeeping of the open transaction."""

    started: float = field(default_factory=time.monotonic)
    sends: list[tuple[SendFuture, PoisonKey | None]] = field(default_factory=list)


class Committer:
    """Commits or aborts the current interval; the steps are in :meth:`commit`."""

    def __init__(self, settings: Settings, producer: TransactionalProducer,
                 consumer: AIOKafkaConsumer, dispatcher: Dispatcher,
                 supervisor: AgentSupervisor, tables: TableManager,
                 partition_counts: Mapping[str, int], max_bytes: Mapping[str, int]) -> None:
        self.settings = settings
        self.producer = producer
        self.consumer = consumer
        self.dispatcher = dispatcher
        self.supervisor = supervisor
        self.tables = tables
        self.lock = asyncio.Lock()
        self.state = Lifecycle.interval()
        self.group: GroupMetadata | None = None
        self.commits = 0
        self.aborts = 0
        self._interval = _Interval()
        self._agent_failed = asyncio.Event()
        self._batches = OutputBatches(producer, partition_counts, max_bytes)
        #: Send record by record until the next commit: a batch with records of several
        #: events failed, and the retry must find the event to blame.
        self._careful = False
        #: A commit's store apply did not complete: stores are behind their changelogs.
        self._stores_behind = False

    # -- the open interval ----------------------------------------------------------
    async def begin(self) -> None:
        """Open the interval's transaction if it is not open yet (lazily, on first use)."""
        if self.state.is_(IntervalState.IDLE):
            if self.settings.exactly_once:
                await self.producer.begin()
            self.state.to(IntervalState.OPEN)
            self._interval = _Interval()

    @property
    def is_open(self) -> bool:
        """Whether the interval's transaction is open (sends may go straight in)."""
        return self.state.state is IntervalState.OPEN

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: Sequence[tuple[str, bytes]] | None) -> None:
        """Add a record to the open transaction; remember which event caused it.

        Agents cannot send during a commit (the barrier waits for them); any other task
        waits for a running commit, so its record belongs to the next transaction.
        """
        event, agent = current_event.get(), current_agent.get()
        if agent is None:
            async with self.lock:
                await self._send(topic, key, value, partition, headers, None)
            return
        source = None if event is None else (agent, event.topic, event.partition, event.offset)
        await self._send(topic, key, value, partition, headers, source)

    async def _send(self, topic: str, key: bytes | None, value: bytes | None,
                    partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
                    source: PoisonKey | None) -> None:
        if self.state.state is not IntervalState.OPEN:
            await self.begin()
        if self._batches.knows(topic):
            await self._batches.append(topic, key, value, partition, headers, source,
                                       alone=self._careful)
        else:
            fut = await self.producer.send(topic, value, key, partition, headers)
            self._interval.sends.append((fut, source))

    async def flush_outputs(self) -> None:
        """Hand the open output batches to the producer now (at-least-once latency).

        Takes the lock: a commit must see every batch it has to wait for.
        """
        async with self.lock:
            await self._batches.flush()

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Send a poison record to ``{app_id}-dlq`` inside the open transaction."""
        rec = letter.record
        log.error("dead-lettering %s[%d]@%d for agent %s: %s",
                  rec.topic, rec.partition, rec.offset, letter.agent, letter.error)
        if self.settings.on_error == "fail":
            error = AgentError if letter.agent_failed else SerializationError
            raise error(
                f"{rec.topic}[{rec.partition}]@{rec.offset} (key {rec.key!r}) failed in agent "
                f"{letter.agent}: {letter.error}; on_error='fail' stops the worker")
        headers = [("eoflow.topic", rec.topic.encode()),
                   ("eoflow.partition", str(rec.partition).encode()),
                   ("eoflow.offset", str(rec.offset).encode()),
                   ("eoflow.agent", letter.agent.encode()),
                   ("eoflow.error", letter.error.encode()[:4000])]
        await self.begin()
        fut = await self.producer.send(self.settings.dlq_topic, rec.value, rec.key, None, headers)
        self._interval.sends.append((fut, None))

    def agent_failed(self, key: PoisonKey | None, exc: BaseException) -> None:
        """An agent raised: count it against its event and ask for an abort."""
        if key is not None:
            self.dispatcher.failures[key] = self.dispatcher.failures.get(key, 0) + 1
            self.dispatcher.last_errors[key] = f"{type(exc).__name__}: {exc}"
            log.warning("agent %s failed on %s[%d]@%d (try %d of %d): %r", key[0], key[1],
                        key[2], key[3], self.dispatcher.failures[key],
                        self.settings.max_retries, exc)
        else:
            log.warning("agent failed outside an event: %r", exc)
        self._agent_failed.set()

    @property
    def abort_requested(self) -> asyncio.Event:
        return self._agent_failed

    # -- commit ---------------------------------------------------------------------
    async def commit(self) -> None:
        """Commit the open interval. Caller holds :attr:`lock`.

        1. Barrier: stop dispatch; wait until agents processed every event handed out.
        2. Flush: send the tables' changelog records; await and check every send.
        3. Offsets: the processed offsets (+1) with the group's generation (KIP-447).
        4. Commit: EndTxn(commit) (at-least-once: commit the offsets to the group).
        5. Apply: each table overlay and its changelog offset into its store, one batch.
        6. Resume: reopen dispatch; the next transaction begins with the next event.
        Any failure before step 4 completes raises; the caller then calls :meth:`abort`.
        """
        t0 = time.monotonic()
        await self._barrier()
        if self.state.is_(IntervalState.IDLE):
            self.dispatcher.open()
            return
        self.state.to(IntervalState.COMMITTING)
        t1 = time.monotonic()
        await self._batches.flush()
        changelog = await self.tables.flush(self.producer.send_batches)
        self._interval.sends.extend((fut, None) for fut in changelog)
        await self._await_sends()
        t2 = time.monotonic()
        self.tables.note_offsets()
        offsets = self._offsets_to_commit()
        fault_point("before_offsets")
        if self.settings.exactly_once:
            if offsets:
                await self.producer.send_offsets(offsets, self._group())
            fault_point("before_commit")
            await self.producer.commit()
        elif offsets:
            await self._commit_at_least_once(offsets)
        fault_point("after_commit")
        t3 = time.monotonic()
        self.state.to(IntervalState.IDLE)
        self.commits += 1
        self._careful = False
        self._batches.reset()
        self._forget_committed_failures(offsets)
        self.dispatcher.next_offsets.clear()
        self._stores_behind = True  # until apply completes: the changelog is ahead
        await self.tables.apply()
        self._stores_behind = False
        self.dispatcher.open()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("committed %d sends, %d partitions: barrier %.1fms flush %.1fms "
                      "offsets+commit %.1fms apply %.1fms", len(self._interval.sends),
                      len(offsets), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
                      (time.monotonic() - t3) * 1e3)

    def _forget_committed_failures(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Drop failure counts of events this commit moved past; keep the others, so an
        unrelated commit between two retries cannot reset a poison event's count."""
        failures = self.dispatcher.failures
        for key in [k for k in failures
                    if k[3] < offsets.get(TopicPartition(k[1], k[2]), -1)]:
            self.dispatcher.forget_failure(key)

    async def _barrier(self) -> None:
        await self.dispatcher.close()
        idle = asyncio.ensure_future(self.supervisor.in_flight.wait_idle())
        failed = asyncio.ensure_future(self._agent_failed.wait())
        remaining = self.settings.transaction_timeout * 0.8 - (
            time.monotonic() - self._interval.started)
        try:
            await asyncio.wait({idle, failed}, timeout=max(remaining, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            failed.cancel()
        if self._agent_failed.is_set():
            raise TransactionAbortedError("an agent raised while processing an event")
        if self.supervisor.in_flight.count:
            self._blame_in_flight()
            raise TransactionAbortedError(
                f"agents did not finish their events within 80% of transaction_timeout="
                f"{self.settings.transaction_timeout}s; aborting the interval")

    def _blame_in_flight(self) -> None:
        for instances in self.supervisor.instances.values():
            for instance in instances:
                event = instance.stream.current_event if instance.stream else None
                if event is not None:
                    self.agent_failed((instance.spec.name, event.topic, event.partition,
                                       event.offset), TimeoutError("agent too slow"))

    async def _await_sends(self) -> None:
        """Invariant 2: every send of the interval succeeded, or the interval aborts."""
        sends = self._interval.sends
        batches = self._batches.sent
        futures = [fut for fut, _ in sends] + [b.future for b in batches]
        if futures:
            await asyncio.wait(futures)
        for fut, source in sends:
            exc = fut.exception()
            if exc is not None:
                if source is not None:
                    self.agent_failed(source, exc)
                raise translate_kafka_error(exc, "delivering a record of this transaction")
        for batch in batches:
            exc = batch.future.exception()
            if exc is not None:
                self._blame_batch(batch.sources, exc)
                raise translate_kafka_error(
                    exc, f"delivering a batch to {batch.topic}[{batch.partition}]")

    def _blame_batch(self, sources: tuple[Any, ...], exc: BaseException) -> None:
        events = {s for s in sources if s is not None}
        if len(events) == 1:
            self.agent_failed(events.pop(), exc)
        elif events:
            log.warning("a batch with records of %d events failed (%r); the retry sends "
                        "each record in a batch of its own to find the event", len(events), exc)
            self._careful = True

    def _offsets_to_commit(self) -> dict[TopicPartition, int]:
        assigned = self.consumer.assignment()
        return {tp: off for tp, off in self.dispatcher.next_offsets.items() if tp in assigned}

    def _group(self) -> GroupMetadata:
        if self.group is None or not self.group.is_valid():
            raise CommitFailedError(f"no valid group generation to commit with: {self.group}")
        return self.group

    async def _commit_at_least_once(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:
            raise CommitFailedError(f"committing offsets {offsets}: {exc!r}") from exc

    # -- abort ----------------------------------------------------------------------
    async def abort(self, reason: BaseException, *, rewind: bool = True) -> None:
        """Throw the interval away and go back to the last committed state.

        Cancels the agents, discards table overlays, replaces the producer (which aborts
        the open transaction on the broker), catches the tables up if the commit outcome
        is unknown, rewinds to the stable committed offsets and restarts the agents.
        Raises :class:`ProducerFencedError` when a newer instance owns the transactional id.
        """
        # The stores may be behind their changelogs: the commit's outcome is unknown, or
        # it committed and writing the stores failed.
        catch_up = self.state.is_(IntervalState.COMMITTING) or self._stores_behind
        timed_out = time.monotonic() - self._interval.started > self.settings.transaction_timeout
        if not self.state.is_(IntervalState.ABORTING):
            self.state.to(IntervalState.ABORTING)
        self.aborts += 1
        log.warning("aborting the interval: %s", reason)
        await self.dispatcher.close()
        await self.supervisor.cancel()
        self.tables.discard()
        self._batches.reset()
        self._interval = _Interval()
        self._agent_failed.clear()
        if isinstance(reason, ProducerFencedError) and not timed_out:
            raise ProducerFencedError(
                f"transactional id {self.producer.transactional_id!r} was fenced: another "
                "worker with the same instance id has started, so this one stops. Give "
                "every worker its own --instance-id / --datadir.") from reason
        if self.settings.exactly_once:
            await self._retrying("recreating the producer", self.producer.reset)
        if catch_up:
            await self._retrying("catching tables up with their changelogs",
                                 self.tables.catch_up)
            self._stores_behind = False
        if rewind:
            await self._retrying("rewinding to the committed offsets", self._rewind)
        self.state.to(IntervalState.IDLE)
        self.supervisor.spawn_all()
        self.dispatcher.open()

    async def _retrying(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a recovery step until it succeeds (the broker may be restarting).

        Gives up after ``2 * transaction_timeout``: by then something else is wrong.
        """
        deadline = time.monotonic() + 2 * self.settings.transaction_timeout
        delay = 0.2
        while True:
            try:
                await step()
                return
            except ProducerFencedError:
                raise
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _rewind(self) -> None:
        assigned = sorted(self.consumer.assignment())
        try:
            offsets = await fetch_stable_offsets(self.consumer, self.settings.app_id, assigned)
        except EoflowError:
            raise
        except Exception as exc:
            raise translate_kafka_error(exc, "fetching committed offsets") from exc
        self.dispatcher.rewind({tp: off for tp, off in offsets.items()})
