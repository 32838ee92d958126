"""Clients of the in-memory broker, implementing the protocols of ``_transport.base``.

A worker built with :class:`MemoryTransport` runs the same commit cycle, barrier,
overlays and abort path as against Kafka. :meth:`MemoryTransport.kill` makes its clients
stop talking to the broker at once, as a ``kill -9`` would: no abort, no leaving the group
(the broker keeps the open transaction and the member until told otherwise).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eoflow.errors import (
    CommitFailedError,
    EoflowError,
    InstanceFencedError,
    LifecycleError,
    RecordRejectedError,
    RestoreError,
    TopicMismatchError,
    TransactionAbortedError,
    TransportError,
)

from ..admin import Topics, TopicSpec
from ..base import GroupMetadata, RebalanceListener, SendFuture, TopicPartition
from .broker import MemoryBroker
from .log import LogRecord

__all__ = ["MemoryTransport"]

#: Largest batch a memory producer builds (aiokafka's default max_batch_size here).
MAX_BATCH_BYTES = 512 * 1024
_RECORD_OVERHEAD = 24


class Killed(BaseException):
    """The client's process was killed: nothing it does reaches the broker any more."""


@dataclass(frozen=True)
class RecordMetadata:
    topic: str
    partition: int
    offset: int


class MemoryBatch:
    """Implements ``base.Batch``."""

    def __init__(self, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self.records: list[tuple[bytes | None, bytes | None, int | None,
                                 Sequence[tuple[str, bytes]]]] = []
        self._size = 0
        self._max = max_bytes
        self.closed = False

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None,
               headers: list[tuple[str, bytes]]) -> object | None:
        size = _RECORD_OVERHEAD + len(key or b"") + len(value or b"") + sum(
            10 + len(n) + len(v) for n, v in headers)
        if self.records and self._size + size > self._max:
            return None
        self.records.append((key, value, timestamp, tuple(headers)))
        self._size += size
        return True

    def size(self) -> int:
        return self._size

    def record_count(self) -> int:
        return len(self.records)

    def close(self) -> None:
        self.closed = True


class _Client:
    def __init__(self, broker: MemoryBroker, transport: MemoryTransport) -> None:
        self._broker = broker
        self._transport = transport

    def _alive(self, op: str, **details: Any) -> None:
        if self._transport.killed:
            raise Killed(op)
        self._broker.check_fault(op, **details)


class MemoryProducer(_Client):
    """Implements ``base.Producer`` (transactional, or idempotent for at-least-once)."""

    def __init__(self, broker: MemoryBroker, transport: MemoryTransport, transactional_id: str,
                 transactional: bool, transaction_timeout: float = 60.0) -> None:
        super().__init__(broker, transport)
        self.transactional_id = transactional_id
        self.transactional = transactional
        self.max_request_size = 4 * 1024 * 1024
        self._timeout = transaction_timeout
        self._epoch = -1
        self._in_transaction = False

    @property
    def _tid(self) -> str | None:
        return self.transactional_id if self.transactional else None

    async def start(self) -> None:
        self._alive("start")
        if self.transactional:
            self._epoch = self._broker.init_producer(self.transactional_id, self._timeout)

    async def close(self) -> None:
        self._epoch = -1
        self._in_transaction = False

    async def reset(self) -> None:
        await self.close()
        await self.start()

    def expect(self, partitions: Iterable[TopicPartition]) -> None:
        """A hint the in-memory broker has no use for: a transaction's partitions cost it
        no round trip."""

    async def begin(self) -> None:
        """As aiokafka's: waits a round trip for the producer id first, and refuses to
        begin a transaction while one is open."""
        self._alive("begin")
        if self._tid is None:
            return
        await asyncio.sleep(0)
        self._broker.check_epoch(self._tid, self._epoch)
        if self._in_transaction:
            raise LifecycleError(f"producer {self.transactional_id!r}: begin while a "
                                 "transaction is open")
        self._in_transaction = True

    def create_batch(self) -> MemoryBatch:
        return MemoryBatch()

    async def submit_batch(self, batch: Any, topic: str, partition: int) -> tuple[SendFuture, int]:
        self._alive("submit_batch", topic=topic, partition=partition)
        return self._deliver(topic, partition, batch.records), batch.record_count()

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None,
                   partition: int | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None,
                   timestamp_ms: int | None = None) -> SendFuture:
        self._alive("send", topic=topic, partition=partition)
        if partition is None:
            from ..batching import default_partition

            count = self._broker.partitions(topic)
            partition = default_partition(key, count) if key is not None else 0
        return self._deliver(topic, partition,
                             [(key, value, timestamp_ms, tuple(headers or ()))])

    async def send_batches(self, topic: str, partition: int,
                           records: Iterable[tuple[bytes, bytes | None]],
                           max_bytes: int) -> list[tuple[SendFuture, int]]:
        sent = []
        batch = MemoryBatch(min(max_bytes, MAX_BATCH_BYTES))
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                sent.append(await self.submit_batch(batch, topic, partition))
                batch = MemoryBatch(min(max_bytes, MAX_BATCH_BYTES))
                batch.append(key=key, value=value, timestamp=None, headers=[])
        if batch.record_count():
            sent.append(await self.submit_batch(batch, topic, partition))
        return sent

    def _deliver(self, topic: str, partition: int, records: Sequence[Any]) -> SendFuture:
        """Append now; the future carries what the broker answered (its delivery)."""
        future: SendFuture = asyncio.get_running_loop().create_future()
        size = sum(_RECORD_OVERHEAD + len(k or b"") + len(v or b"") for k, v, _, _ in records)
        try:
            if size + 61 > self._broker.max_message_bytes(topic):
                raise TransactionAbortedError(
                    f"{topic}[{partition}]: MESSAGE_TOO_LARGE (batch of {size} bytes)")
            offset = self._broker.append(self._tid, self._epoch, topic, partition, records)
        except EoflowError as exc:
            future.set_exception(exc)
        else:
            future.set_result(RecordMetadata(topic, partition, offset))
        return future

    async def send_offsets(self, offsets: Mapping[TopicPartition, int],
                           group: GroupMetadata) -> None:
        self._alive("send_offsets")
        if not group.is_valid():
            raise CommitFailedError(
                f"refusing to commit offsets with generation {group.generation_id} and member "
                f"{group.member_id!r}: that would disable zombie fencing")
        if self._tid is not None:
            self._broker.add_offsets(self._tid, self._epoch, group, offsets)

    async def commit(self) -> None:
        self._alive("commit")
        if self._tid is not None:
            self._broker.end_transaction(self._tid, self._epoch, commit=True)
        self._in_transaction = False


class MemoryGroupConsumer(_Client):
    """Implements ``base.GroupConsumer``: a member of an in-memory group."""

    _ids = itertools.count(1)

    def __init__(self, broker: MemoryBroker, transport: MemoryTransport, group_id: str,
                 instance_id: str | None, client_id: str, session_timeout: float = 10.0) -> None:
        super().__init__(broker, transport)
        self._group_id = group_id
        self.session_timeout = session_timeout
        self.instance_id = instance_id
        self.member_id = f"{client_id}-{next(self._ids)}-{uuid.uuid4().hex[:6]}"
        self.topics: set[str] = set()
        self._listener: RebalanceListener | None = None
        self._assigned: set[TopicPartition] = set()
        self._generation = -1
        self._positions: dict[TopicPartition, int] = {}
        self._is_fenced = False
        self._must_rejoin = False
        self._rejoining: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        #: The web address this member publishes (``advertise``).
        self.url: str | None = None

    # -- broker-side callbacks (Member) ------------------------------------------------
    async def revoked(self) -> None:
        if self._transport.killed:
            return  # a dead member's callbacks never run
        # As in aiokafka, the assignment is still the old one during the callback.
        if self._listener is not None:
            await self._listener.on_partitions_revoked(set(self._assigned))
        self._assigned = set()

    async def assigned(self, partitions: set[TopicPartition], generation: int) -> None:
        self._generation = generation
        self._assigned = set(partitions)
        for tp in partitions:
            committed, _ = self._broker.committed(self._group_id, [tp])
            self._positions[tp] = max(committed[tp], self._broker.log(*tp).log_start)
        if self._transport.killed:
            return
        if self._listener is not None:
            await self._listener.on_partitions_assigned(set(partitions))

    def fenced(self) -> None:
        self._is_fenced = True
        self._assigned = set()

    def expired(self) -> None:
        self._must_rejoin = True

    # -- GroupConsumer --------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str], listener: RebalanceListener) -> None:
        self.topics = set(topics)
        self._listener = listener

    async def start(self) -> None:
        self._alive("start")
        self._transport.members.append(self)
        await self._broker.join(self._group_id, self)

    def session_expires(self) -> None:
        """The process died: the group drops the member after ``session_timeout``."""
        async def expire() -> None:
            await asyncio.sleep(self.session_timeout)
            await self._broker.expire(self._group_id, self.member_id)

        self._expiry = asyncio.get_running_loop().create_task(expire())

    async def stop(self) -> None:
        if self._transport.killed or self._is_fenced:
            return
        await self._broker.leave(self._group_id, self)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def group_metadata(self) -> GroupMetadata:
        return GroupMetadata(self._group_id, self._generation, self.member_id, self.instance_id)

    def request_rejoin(self) -> None:
        self._rejoining = asyncio.get_running_loop().create_task(
            self._broker.rejoin(self._group_id))

    async def fetch(self, timeout: float,
                    max_records: int) -> Mapping[TopicPartition, Sequence[LogRecord]]:
        self._alive("fetch")
        if self._is_fenced:
            raise InstanceFencedError(
                f"another worker joined group {self._group_id!r} with this worker's instance "
                f"id {self.instance_id!r}; this one stops. Give every worker its own "
                "--instance-id / --datadir.")
        if self._must_rejoin:  # as aiokafka does after UNKNOWN_MEMBER_ID on a heartbeat
            self._must_rejoin = False
            self.member_id = f"{self.member_id.rsplit('-', 2)[0]}-{next(self._ids)}-rejoined"
            # Callbacks run in a group task of their own, never in the fetching task.
            self._rejoining = asyncio.get_running_loop().create_task(
                self._broker.join(self._group_id, self))
            return {}
        out = self._read(max_records)
        if not out:
            await self._broker.wait_changed(timeout)
            self._alive("fetch")
            out = self._read(max_records)
        return out

    def _read(self, max_records: int) -> dict[TopicPartition, list[LogRecord]]:
        out: dict[TopicPartition, list[LogRecord]] = {}
        for tp in sorted(self._assigned):
            records, self._positions[tp] = self._broker.log(*tp).read(
                self._positions.get(tp, 0), max_records)
            if records:
                out[tp] = records
        return out

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self._assigned:
                self._positions[tp] = offset if offset >= 0 else \
                    self._broker.log(*tp).log_start

    async def committed_offsets(self, partitions: Iterable[TopicPartition], *,
                                timeout: float = 120.0) -> dict[TopicPartition, int]:
        wanted = list(partitions)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self._alive("committed_offsets")
            self._broker.expire_transactions()
            offsets, pending = self._broker.committed(self._group_id, wanted)
            if not pending:
                return offsets
            if asyncio.get_running_loop().time() > deadline:
                raise TransportError(
                    f"committed offsets of group {self._group_id!r} stayed held by a pending "
                    f"transaction for {timeout:.0f}s")
            await self._broker.wait_changed(0.05)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._alive("commit_offsets")
        self._broker.commit_offsets(self.group_metadata(), offsets)

    def advertise(self, url: str) -> None:
        self.url = url

    def peers(self) -> dict[str, frozenset[TopicPartition]]:
        return {m.url: frozenset(m.assignment()) for m in self._broker.members(self._group_id)
                if isinstance(m, MemoryGroupConsumer) and m.url is not None}

    def progress(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        return {tp: (self._positions.get(tp), self._broker.log(*tp).last_stable_offset)
                for tp in self._assigned}


class MemoryChangelogReader(_Client):
    """Implements ``_state.restore.ChangelogReader`` over the broker's logs."""

    def __init__(self, broker: MemoryBroker, transport: MemoryTransport) -> None:
        super().__init__(broker, transport)
        self._positions: dict[tuple[str, int], int] = {}

    async def __aenter__(self) -> MemoryChangelogReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        self._restore_fault(topic, partition)
        log = self._broker.log(topic, partition)
        return log.log_start, log.high_watermark

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self._positions[(topic, partition)] = offset

    async def read(self, topic: str, partition: int, max_records: int,
                   timeout: float) -> tuple[Sequence[LogRecord], int]:
        self._restore_fault(topic, partition)
        self._broker.expire_transactions()
        log = self._broker.log(topic, partition)
        position = self._positions.get((topic, partition), log.log_start)
        records, position = log.read(position, max_records)
        if not records and position >= log.last_stable_offset:
            await self._broker.wait_changed(timeout)
        self._positions[(topic, partition)] = position
        return records, position

    def _restore_fault(self, topic: str, partition: int) -> None:
        try:
            self._alive("restore", topic=topic, partition=partition)
        except EoflowError as exc:
            raise RestoreError(f"Restoring table changelog {topic}[{partition}] failed: "
                               f"{exc}") from exc


class MemoryTransport:
    """Implements ``base.Transport`` for one worker over a shared :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.killed = False
        self.members: list[MemoryGroupConsumer] = []

    def kill(self) -> None:
        """From now on this worker's clients do nothing to the broker (``kill -9``); its
        group members expire after their session timeout."""
        self.killed = True
        for member in self.members:
            member.session_expires()

    async def check_access(self, who: str) -> None:
        """Nothing to check: the memory broker has no credentials."""

    async def list_topics(self) -> dict[str, int]:
        return {name: self.broker.partitions(name) for name in sorted(self.broker.logs)}

    async def delete_records(self, before: Mapping[TopicPartition, int]) -> None:
        if self.killed:
            return
        for tp, offset in before.items():
            try:
                self.broker.log(tp.topic, tp.partition).delete_before(offset)
            except (ValueError, RecordRejectedError) as exc:
                raise TransportError(f"deleting records of {tp}: {exc}") from exc

    async def ensure_topics(self, specs: Sequence[TopicSpec], replication_factor: int) -> Topics:
        for spec in specs:
            found = self.broker.partitions(spec.name)
            if found and found != spec.partitions:
                raise TopicMismatchError(
                    f"topic {spec.name!r} exists with {found} partitions but the app declares "
                    f"{spec.partitions}")
            self.broker.create_topic(spec.name, spec.partitions, spec.config)
        names = [s.name for s in specs]
        return Topics({n: self.broker.partitions(n) for n in names},
                      {n: self.broker.max_message_bytes(n) for n in names},
                      {n: self.broker.delete_retention(n) for n in names},
                      {n: self.broker.retention_ms(n) for n in names})

    def producer(self, transactional_id: str, *, transactional: bool,
                 transaction_timeout: float, client_id: str) -> MemoryProducer:
        return MemoryProducer(self.broker, self, transactional_id, transactional,
                              transaction_timeout)

    def group_consumer(self, *, group_id: str, instance_id: str, client_id: str,
                       session_timeout: float, max_poll_interval: float) -> MemoryGroupConsumer:
        return MemoryGroupConsumer(self.broker, self, group_id, instance_id, client_id,
                                   session_timeout)

    def changelog_reader(self) -> MemoryChangelogReader:
        return MemoryChangelogReader(self.broker, self)
