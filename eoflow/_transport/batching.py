"""Output records of an interval, appended to per-partition batches.

aiokafka's ``send()`` costs a coroutine, a future and a partitioner call per record. Here
a record is one append to the open batch of its partition; a full batch goes to the
producer whole, with one future, and remembers which events its records came from so a
failed batch can be blamed on them. Partitions follow Kafka's default partitioner
(murmur2 of the key), so co-partitioning with other clients holds.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from .producer import SendFuture, TransactionalProducer

__all__ = ["OutputBatches", "SentBatch", "default_partition"]

_CACHE_LIMIT = 100_000


def default_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` (Java client and aiokafka agree)."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


@dataclass
class _Open:
    builder: Any
    sources: list[Hashable | None] = field(default_factory=list)


@dataclass(frozen=True)
class SentBatch:
    """A batch handed to the producer: its future and the events behind its records."""

    future: SendFuture
    topic: str
    partition: int
    sources: tuple[Hashable | None, ...]


class OutputBatches:
    """The open batches of one transaction (one per topic partition)."""

    def __init__(self, producer: TransactionalProducer, partition_counts: Mapping[str, int]):
        self._producer = producer
        self._counts = partition_counts
        self._open: dict[tuple[str, int], _Open] = {}
        self._partitions: dict[tuple[str, bytes], int] = {}
        self.sent: list[SentBatch] = []

    def knows(self, topic: str) -> bool:
        """Whether records for ``topic`` can be batched (its partition count is known)."""
        return topic in self._counts

    def partition_for(self, topic: str, key: bytes | None) -> int:
        count = self._counts[topic]
        if key is None:
            return random.randrange(count)
        cache_key = (topic, key)
        partition = self._partitions.get(cache_key)
        if partition is None:
            if len(self._partitions) >= _CACHE_LIMIT:
                self._partitions.clear()
            partition = self._partitions[cache_key] = default_partition(key, count)
        return partition

    async def append(self, topic: str, key: bytes | None, value: bytes | None,
                     partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
                     source: Hashable | None) -> None:
        """Add a record; hands the partition's batch to the producer when it is full."""
        if partition is None:
            partition = self.partition_for(topic, key)
        tp = (topic, partition)
        open_batch = self._open.get(tp)
        if open_batch is None:
            open_batch = self._open[tp] = _Open(self._producer.create_batch())
        headers = list(headers) if headers else []
        if open_batch.builder.append(key=key, value=value, timestamp=None,
                                     headers=headers) is None:
            await self._submit(tp, self._open.pop(tp))
            open_batch = self._open[tp] = _Open(self._producer.create_batch())
            open_batch.builder.append(key=key, value=value, timestamp=None, headers=headers)
        open_batch.sources.append(source)

    async def flush(self) -> None:
        """Hand every open batch to the producer (the commit barrier calls this)."""
        while self._open:
            tp, open_batch = self._open.popitem()
            await self._submit(tp, open_batch)

    async def _submit(self, tp: tuple[str, int], open_batch: _Open) -> None:
        future, _count = await self._producer.submit_batch(open_batch.builder, *tp)
        self.sent.append(SentBatch(future, tp[0], tp[1], tuple(open_batch.sources)))

    def reset(self) -> None:
        """Forget everything (the transaction is over, committed or aborted)."""
        self._open.clear()
        self.sent = []
