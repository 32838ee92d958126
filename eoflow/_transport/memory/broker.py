"""An in-memory Kafka broker for tests: topics, transactions, consumer groups.

What it models, because the commit cycle depends on it:

* **Transactions**: records of an open transaction take offsets at once and are hidden
  from ``read_committed`` readers until the commit marker; an abort hides them for good.
  Offsets sent with a transaction reach the group only at commit.
* **Fencing**: ``init_producer`` bumps the epoch of a transactional id and aborts its open
  transaction; any later call with an older epoch raises :class:`ProducerFencedError`.
  A transaction open longer than its producer's transaction timeout is aborted (and the
  epoch bumped), as the coordinator does.
* **Groups**: eager rebalances (every member's partitions revoked, then a range
  assignment with a new generation), static membership (a member joining with another's
  instance id replaces it), and KIP-447 checks: offsets committed with a stale generation
  or an unknown member are refused (:class:`CommitFailedError`); a stable-offset fetch
  waits while a transaction holds offsets of the group.
* **Faults**: :meth:`MemoryBroker.inject` makes the next calls of a client operation fail.

It is not a network: calls return at once, and members of one group rebalance in the task
that joined or left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eoflow.errors import CommitFailedError, ProducerFencedError, RecordRejectedError

from ..admin import DEFAULT_DELETE_RETENTION, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RETENTION_MS
from ..base import GroupMetadata, TopicPartition
from .log import PartitionLog

__all__ = ["MemoryBroker"]


class Member(Protocol):
    """What the broker needs of a group member (``clients.MemoryGroupConsumer``)."""

    member_id: str
    instance_id: str | None
    topics: set[str]

    async def revoked(self) -> None: ...

    async def assigned(self, partitions: set[TopicPartition], generation: int) -> None: ...

    def fenced(self) -> None: ...

    def expired(self) -> None: ...


@dataclass
class _Txn:
    id: int
    epoch: int
    timeout: float = 60.0
    started: float = field(default_factory=time.monotonic)
    partitions: set[TopicPartition] = field(default_factory=set)
    #: group id -> (generation metadata, offsets) sent with this transaction.
    offsets: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)


@dataclass
class _Group:
    generation: int = 0
    members: dict[str, Member] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Fault:
    op: str
    error: BaseException
    times: int
    when: Callable[..., bool] | None


class MemoryBroker:
    """Topics, transactions and groups shared by every client of one test."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or time.time
        self.logs: dict[str, list[PartitionLog]] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self._txn_ids = itertools.count(1)
        self._epochs: dict[str, int] = {}
        self._timeouts: dict[str, float] = {}
        self._open: dict[str, _Txn] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = asyncio.Event()
        self._faults: list[_Fault] = []

    # -- topics --------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int,
                     config: Mapping[str, str] | None = None) -> None:
        if name in self.logs:
            return
        self.logs[name] = [PartitionLog(name, p) for p in range(partitions)]
        self.configs[name] = dict(config or {})

    def log(self, topic: str, partition: int) -> PartitionLog:
        logs = self.logs.get(topic)
        if logs is None:
            raise RecordRejectedError(f"topic {topic!r} does not exist")
        if not 0 <= partition < len(logs):
            raise RecordRejectedError(
                f"send to {topic!r} partition {partition}: the topic has {len(logs)} "
                "partitions")
        return logs[partition]

    def partitions(self, topic: str) -> int:
        return len(self.logs.get(topic, ()))

    def max_message_bytes(self, topic: str) -> int:
        return int(self.configs.get(topic, {}).get("max.message.bytes",
                                                    DEFAULT_MAX_MESSAGE_BYTES))

    def delete_retention(self, topic: str) -> float:
        raw = self.configs.get(topic, {}).get("delete.retention.ms")
        return DEFAULT_DELETE_RETENTION if raw is None else int(raw) / 1000

    def retention_ms(self, topic: str) -> int:
        return int(self.configs.get(topic, {}).get("retention.ms", DEFAULT_RETENTION_MS))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- change notification -------------------------------------------------------
    def changed(self) -> None:
        """Wake everyone waiting for records (a new record, a marker, a commit)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout: float) -> None:
        self.expire_transactions()
        event = self._changed
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
        # arrives as the wait ends, and the cancelled dispatcher would run on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    # -- faults --------------------------------------------------------------------
    def inject(self, op: str, error: BaseException, *, times: int = 1,
               when: Callable[..., bool] | None = None) -> None:
        """Make the next ``times`` calls of client operation ``op`` raise ``error``.

        Operations: ``begin``, ``send``, ``submit_batch``, ``send_offsets``, ``commit``,
        ``fetch``, ``committed_offsets``, ``restore``. ``when(**details)`` narrows which
        calls fail (details are the operation's arguments, e.g. ``topic``).
        """
        self._faults.append(_Fault(op, error, times, when))

    def check_fault(self, op: str, **details: Any) -> None:
        for fault in self._faults:
            if fault.op == op and fault.times > 0 and (fault.when is None
                                                        or fault.when(**details)):
                fault.times -= 1
                raise fault.error

    # -- transactions --------------------------------------------------------------
    def init_producer(self, transactional_id: str, transaction_timeout: float = 60.0) -> int:
        """InitProducerId: a new epoch; the id's open transaction is aborted."""
        self._timeouts[transactional_id] = transaction_timeout
        epoch = self._epochs.get(transactional_id, -1) + 1
        self._epochs[transactional_id] = epoch
        txn = self._open.pop(transactional_id, None)
        if txn is not None:
            self._end(txn, commit=False)
        return epoch

    def expire_transactions(self) -> None:
        """Abort every transaction open longer than its timeout (bumping its epoch)."""
        now = time.monotonic()
        for tid, txn in list(self._open.items()):
            if now - txn.started > txn.timeout:
                del self._open[tid]
                self._epochs[tid] = self._epochs.get(tid, 0) + 1
                self._end(txn, commit=False)

    def check_epoch(self, transactional_id: str, epoch: int) -> None:
        if self._epochs.get(transactional_id) != epoch:
            raise ProducerFencedError(
                f"producer {transactional_id!r} epoch {epoch} was fenced (current epoch "
                f"{self._epochs.get(transactional_id)})")

    def append(self, transactional_id: str | None, epoch: int, topic: str, partition: int,
               records: Sequence[tuple[bytes | None, bytes | None, int | None,
                                       Sequence[tuple[str, bytes]]]]) -> int:
        """Append records (in the id's open transaction, if any); the first one's offset."""
        txn = None
        if transactional_id is not None:
            self.check_epoch(transactional_id, epoch)
            txn = self._open.get(transactional_id)
            if txn is None:
                txn = self._open[transactional_id] = _Txn(
                    next(self._txn_ids), epoch, self._timeouts.get(transactional_id, 60.0))
        log = self.log(topic, partition)
        now = self.now_ms()
        first = -1
        for key, value, timestamp, headers in records:
            offset = log.append(key, value, now if timestamp is None else timestamp, headers,
                                None if txn is None else txn.id)
            first = offset if first < 0 else first
        if txn is not None:
            txn.partitions.add(TopicPartition(topic, partition))
        self.changed()
        return first

    def add_offsets(self, transactional_id: str, epoch: int, group: GroupMetadata,
                    offsets: Mapping[TopicPartition, int]) -> None:
        """TxnOffsetCommit v3: refused for a stale generation or an unknown member."""
        self.check_epoch(transactional_id, epoch)
        self._check_member(group)
        txn = self._open.get(transactional_id)
        if txn is None:
            txn = self._open[transactional_id] = _Txn(
                next(self._txn_ids), epoch, self._timeouts.get(transactional_id, 60.0))
        txn.offsets.setdefault(group.group_id, {}).update(offsets)

    def end_transaction(self, transactional_id: str, epoch: int, commit: bool) -> None:
        self.check_epoch(transactional_id, epoch)
        txn = self._open.pop(transactional_id, None)
        if txn is not None:
            self._end(txn, commit)

    def _end(self, txn: _Txn, commit: bool) -> None:
        for tp in txn.partitions:
            self.log(tp.topic, tp.partition).end_transaction(txn.id, commit)
        if commit:
            for group_id, offsets in txn.offsets.items():
                self._group(group_id).committed.update(offsets)
        self.changed()

    def open_transactions(self) -> list[str]:
        """Transactional ids with an open transaction (for tests)."""
        return sorted(self._open)

    # -- groups --------------------------------------------------------------------
    def _group(self, group_id: str) -> _Group:
        return self._groups.setdefault(group_id, _Group())

    def _check_member(self, group: GroupMetadata) -> None:
        state = self._group(group.group_id)
        if group.member_id not in state.members:
            raise CommitFailedError(
                f"group {group.group_id!r} refused offsets: UNKNOWN_MEMBER_ID "
                f"({group.member_id!r}); this worker is no longer the owner of the partition")
        if group.generation_id != state.generation:
            raise CommitFailedError(
                f"group {group.group_id!r} refused offsets: ILLEGAL_GENERATION (generation "
                f"{group.generation_id}, current {state.generation})")

    def committed(self, group_id: str, partitions: Iterable[TopicPartition]
                  ) -> tuple[dict[TopicPartition, int], bool]:
        """Committed offsets (-1 if none), and whether a transaction holds some of them."""
        wanted = list(partitions)
        state = self._group(group_id)
        pending = any(tp in txn.offsets.get(group_id, {}) for txn in self._open.values()
                      for tp in wanted)
        return {tp: state.committed.get(tp, -1) for tp in wanted}, pending

    def commit_offsets(self, group: GroupMetadata, offsets: Mapping[TopicPartition, int]) -> None:
        """OffsetCommit outside a transaction (at-least-once)."""
        self._check_member(group)
        self._group(group.group_id).committed.update(offsets)

    async def join(self, group_id: str, member: Member) -> None:
        """A member joins (replacing a static member with its instance id): rebalance."""
        state = self._group(group_id)
        async with state.lock:
            for other in list(state.members.values()):
                if member.instance_id is not None and other.instance_id == member.instance_id:
                    del state.members[other.member_id]
                    other.fenced()
            state.members[member.member_id] = member
            # Like aiokafka's join prepare, a (re)joining member revokes what it had too.
            await self._rebalance(group_id, state, revoke=list(state.members.values()))

    async def leave(self, group_id: str, member: Member, *, graceful: bool = True) -> None:
        """A member leaves (or, not graceful, its session expired): rebalance the rest."""
        state = self._group(group_id)
        async with state.lock:
            if state.members.pop(member.member_id, None) is None:
                return
            others = list(state.members.values())
            await self._rebalance(group_id, state, revoke=others)

    async def expire(self, group_id: str, member_id: str) -> None:
        """The member's session expired (a paused process, a partition): it is removed
        without being told, and the others rebalance. It learns at its next fetch."""
        state = self._group(group_id)
        async with state.lock:
            member = state.members.pop(member_id, None)
            if member is None:
                return
            await self._rebalance(group_id, state, revoke=list(state.members.values()))
        member.expired()

    def member_ids(self, group_id: str) -> list[str]:
        return sorted(self._group(group_id).members)

    def members(self, group_id: str) -> list[Member]:
        return list(self._group(group_id).members.values())

    async def rejoin(self, group_id: str) -> None:
        """Every member rejoins: a new generation with the same members."""
        state = self._group(group_id)
        async with state.lock:
            await self._rebalance(group_id, state, revoke=list(state.members.values()))

    async def _rebalance(self, group_id: str, state: _Group, revoke: list[Member]) -> None:
        for member in revoke:
            await member.revoked()
        state.generation += 1
        members = sorted(state.members.values(), key=lambda m: m.instance_id or m.member_id)
        assignment: dict[str, set[TopicPartition]] = {m.member_id: set() for m in members}
        topics = sorted({t for m in members for t in m.topics})
        for topic in topics:
            subscribers = [m for m in members if topic in m.topics]
            count = self.partitions(topic)
            per, extra = divmod(count, len(subscribers))
            start = 0
            for i, member in enumerate(subscribers):
                n = per + (1 if i < extra else 0)
                assignment[member.member_id].update(
                    TopicPartition(topic, p) for p in range(start, start + n))
                start += n
        for member in members:
            await member.assigned(assignment[member.member_id], state.generation)

    def generation(self, group_id: str) -> int:
        return self._group(group_id).generation

