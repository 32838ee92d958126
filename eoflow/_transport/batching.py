"""Output records of an interval, appended to per-partition batches.

aiokafka's ``send()`` costs a coroutine, a future and a partitioner call per record. Here
a record is one append to the open batch of its partition; a full batch goes to the
producer whole, with one future, and remembers which events its records came from so a
failed batch can be blamed on them. Partitions follow Kafka's default partitioner
(murmur2 of the key), so co-partitioning with other clients holds.

One :class:`OutputBatches` belongs to one interval. A batch handed to the producer that
the producer refused is lost with the records of every event in it: :attr:`failure`
keeps the error, and the interval must abort whatever the agent did with the exception.

An interval's batches start *held*: records collect, full batches queue, and nothing goes
to the producer until the interval's transaction has begun and :meth:`release` is called
(the previous interval may still be committing, and its transaction must not take them).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from eoflow.errors import RecordRejectedError, RecordTooLargeError

from .admin import DEFAULT_MAX_MESSAGE_BYTES
from .base import Producer, SendFuture

__all__ = ["BATCH_OVERHEAD", "OutputBatches", "Partitioner", "SentBatch", "check_partition",
           "check_record_size", "default_partition", "record_size"]

_CACHE_LIMIT = 100_000
#: Bytes a record batch adds around its records (v2 header), plus headroom.
BATCH_OVERHEAD = 128
_RECORD_OVERHEAD = 24  # varints for length, attributes, deltas and counts
#: Shared by every record without headers (builders only iterate it).
_NO_HEADERS: list[tuple[str, bytes]] = []


def record_size(key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]] | None = None) -> int:
    """An upper estimate of a record's size inside an uncompressed v2 batch."""
    size = _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
    for name, data in headers or ():
        size += 10 + len(name) + len(data)
    return size


def check_record_size(topic: str, partition: int | None, key: bytes | None, size: int,
                      limit: int) -> None:
    """Refuse a record the broker would refuse, naming it, before it joins a batch."""
    if size + BATCH_OVERHEAD > limit:
        where = f"{topic}[{partition}]" if partition is not None else repr(topic)
        raise RecordTooLargeError(
            f"record for {where} with key {(key or b'')[:60]!r} is {size} bytes; the topic "
            f"accepts at most {limit} (max.message.bytes). Make it smaller, or raise the "
            "topic's max.message.bytes")


def check_partition(topic: str, partition: int, count: int) -> None:
    """Refuse a partition number the topic does not have, naming both."""
    if not 0 <= partition < count:
        raise RecordRejectedError(
            f"send to {topic!r} partition {partition}: the topic has {count} partitions "
            f"(0 to {count - 1})")


def default_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` (Java client and aiokafka agree)."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


class Partitioner:
    """Partition numbers by topic partition count and key, with a bounded cache."""

    def __init__(self, partition_counts: Mapping[str, int]) -> None:
        self.counts = partition_counts
        self._cache: dict[tuple[str, bytes], int] = {}

    def knows(self, topic: str) -> bool:
        """Whether records for ``topic`` can be batched (its partition count is known)."""
        return topic in self.counts

    def partition_for(self, topic: str, key: bytes | None) -> int:
        count = self.counts[topic]
        if key is None:
            return random.randrange(count)
        cache_key = (topic, key)
        partition = self._cache.get(cache_key)
        if partition is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            partition = self._cache[cache_key] = default_partition(key, count)
        return partition


@dataclass
class _Open:
    builder: Any
    sources: list[object] = field(default_factory=list)


@dataclass(frozen=True)
class SentBatch:
    """A batch handed to the producer: its future and the events behind its records."""

    future: SendFuture
    topic: str
    partition: int
    sources: tuple[object, ...]


class OutputBatches:
    """The open batches of one interval's transaction (one per topic partition)."""

    def __init__(self, producer: Producer, partitioner: Partitioner,
                 max_bytes: Mapping[str, int]) -> None:
        self._producer = producer
        self._partitioner = partitioner
        self._limits = max_bytes
        self._open: dict[tuple[str, int], _Open] = {}
        #: Full batches waiting for :meth:`release`, in the order they filled.
        self._queued: list[tuple[tuple[str, int], _Open]] = []
        self.held = True
        self.sent: list[SentBatch] = []
        #: The first refused hand-off: its records are gone, the interval must abort.
        self.failure: BaseException | None = None

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
            source: object, timestamp_ms: int | None = None) -> bool:
        """Append a record to its partition's open batch without awaiting (the common
        case); False, with nothing touched, when that batch is full and must be handed to
        the producer first (:meth:`append` does that). Refuses records as it does."""
        tp, size, limit = self._place(topic, key, value, partition, headers)
        open_batch = self._open.get(tp)
        if open_batch is None:
            open_batch = self._open[tp] = _Open(self._producer.create_batch())
        elif open_batch.builder.size() + size + BATCH_OVERHEAD > limit:
            return False
        if open_batch.builder.append(key=key, value=value, timestamp=timestamp_ms,
                                     headers=list(headers) if headers else _NO_HEADERS) is None:
            return False
        open_batch.sources.append(source)
        return True

    async def append(self, topic: str, key: bytes | None, value: bytes | None,
                     partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
                     source: object, *, alone: bool = False,
                     timestamp_ms: int | None = None) -> None:
        """Add a record; hands the partition's batch to the producer when it is full.

        A batch never grows past the topic's ``max.message.bytes``, and a record that
        alone would exceed it raises :class:`RecordTooLargeError` here, in the agent that
        sends it; a partition the topic does not have raises :class:`RecordRejectedError`.
        Neither touches the batches. ``alone`` sends the record in a batch of its own (to
        blame failures).
        """
        tp, size, limit = self._place(topic, key, value, partition, headers)
        open_batch = self._open.get(tp)
        if open_batch is not None and open_batch.builder.size() + size + BATCH_OVERHEAD > limit:
            await self._submit(tp, self._open.pop(tp))
            open_batch = None
        if open_batch is None:
            open_batch = self._open[tp] = _Open(self._producer.create_batch())
        headers = list(headers) if headers else _NO_HEADERS
        if open_batch.builder.append(key=key, value=value, timestamp=timestamp_ms,
                                     headers=headers) is None:
            await self._submit(tp, self._open.pop(tp))
            open_batch = self._open[tp] = _Open(self._producer.create_batch())
            open_batch.builder.append(key=key, value=value, timestamp=timestamp_ms,
                                      headers=headers)
        open_batch.sources.append(source)
        if alone:
            await self._submit(tp, self._open.pop(tp))

    def _place(self, topic: str, key: bytes | None, value: bytes | None,
               partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
               ) -> tuple[tuple[str, int], int, int]:
        """``((topic, partition), record size, topic's size limit)``; refuses a record
        that is too large or names a partition the topic does not have."""
        size = record_size(key, value, headers)
        limit = self._limits.get(topic, DEFAULT_MAX_MESSAGE_BYTES)
        check_record_size(topic, partition, key, size, limit)
        if partition is None:
            partition = self._partitioner.partition_for(topic, key)
        else:
            check_partition(topic, partition, self._partitioner.counts[topic])
        return (topic, partition), size, limit

    @property
    def open_count(self) -> int:
        """Batches not handed to the producer yet."""
        return len(self._open) + len(self._queued)

    async def release(self) -> None:
        """The transaction has begun: hand over the queued batches, oldest first, and
        every batch that fills from now on. Batches that fill meanwhile queue behind, so a
        partition's batches keep their order."""
        while self._queued:
            tp, open_batch = self._queued.pop(0)
            await self._hand_over(tp, open_batch)
        self.held = False

    async def flush(self) -> None:
        """Hand every open batch to the producer, until none is open (the commit calls
        this after its barrier, when nothing adds records any more)."""
        await self.release()
        while self._open:
            await self.hand_over_open()

    async def hand_over_open(self) -> None:
        """Hand the batches open now to the producer; batches opened meanwhile wait.

        The linger tick calls this while agents run. The producer takes a partition's
        batch only once its previous one is on the wire, and an agent under load opens
        new batches during that wait: "until none is open" would not end before the agent
        ran out of events, and the commit waiting behind the tick would come late.
        Held batches stay where they are.
        """
        if self.held:
            return
        for tp in list(self._open):
            open_batch = self._open.pop(tp, None)
            if open_batch is not None:
                await self._submit(tp, open_batch)

    async def _submit(self, tp: tuple[str, int], open_batch: _Open) -> None:
        if self.held:
            self._queued.append((tp, open_batch))
            return
        await self._hand_over(tp, open_batch)

    async def _hand_over(self, tp: tuple[str, int], open_batch: _Open) -> None:
        try:
            future, _count = await self._producer.submit_batch(open_batch.builder, *tp)
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc
            raise
        # The commit reads every batch's outcome; an interval that aborts first does not,
        # and asyncio would log each failed batch as "exception was never retrieved".
        future.add_done_callback(_retrieved)
        self.sent.append(SentBatch(future, tp[0], tp[1], tuple(open_batch.sources)))


def _retrieved(future: Any) -> None:
    if not future.cancelled():
        future.exception()
