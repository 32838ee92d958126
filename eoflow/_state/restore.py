"""Restore a table partition's store from its changelog topic partition.

Invariant 6: restore uses its own assign-only ``read_committed`` consumer and reads from
the store's changelog offset + 1 to the end offset, which under ``read_committed`` is the
last stable offset (LSO). It is done when the consumer's *position* reaches that target:
the last entry below the LSO is usually a transaction marker, which is never returned as a
record, so waiting for a record at ``target - 1`` would wait forever.

Steps of :func:`restore_partition`:

1. Open the consumer, assign the changelog partition, read its log start and end offsets.
2. Decide where to start (:func:`_plan_start`). A stored offset at or past the end (topic
   recreated, store from another cluster) or below the log start (records we never saw
   were deleted) means the store is stale: wipe it and restore from the log start.
3. Copy records in chunks, each chunk applied with its last offset in one atomic store
   batch off the event loop; ``value is None`` is a tombstone. Records of aborted
   transactions are never returned under ``read_committed``.
4. Log progress every ``progress_interval`` seconds and once at the end; return stats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from eoflow._state.base import PartitionStore
from eoflow._state.errors import RestoreError
from eoflow._state.faults import fault_point

__all__ = ["RestoreStats", "restore_partition"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreStats:
    """What one restore did."""

    topic: str
    partition: int
    records: int  #: changelog records applied (transaction markers not counted)
    seconds: float
    start_offset: int  #: first changelog offset read
    end_offset: int  #: position reached (>= the LSO taken at the start)
    rebuilt: bool  #: True when a stale store was wiped and restored from scratch

    @property
    def records_per_second(self) -> float:
        """Apply rate over the whole restore."""
        return self.records / self.seconds if self.seconds > 0 else float(self.records)


class _Progress:
    """Rate-limited progress logging for one restore."""

    def __init__(self, tp: TopicPartition, start: int, end: int, interval: float, log: Any):
        self._tp, self._start, self._end = tp, start, end
        self._interval, self._log = interval, log
        self.began = time.monotonic()
        self._next = self.began + interval
        self.records = 0

    def tick(self, position: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now < self._next:
            return
        self._next = now + self._interval
        elapsed = max(now - self.began, 1e-9)
        span = max(self._end - self._start, 1)
        percent = min(100.0, 100.0 * (position - self._start) / span)
        self._log.info(
            "%s changelog %s[%d]: %d records in %.1fs (%.0f records/s), offset %d of %d (%.1f%%)",
            "Restored" if final else "Restoring",
            self._tp.topic,
            self._tp.partition,
            self.records,
            elapsed,
            self.records / elapsed,
            position,
            self._end,
            percent if self._end > self._start else 100.0,
        )


async def restore_partition(
    bootstrap: str,
    changelog: TopicPartition,
    store: PartitionStore,
    *,
    progress_interval: float = 5.0,
    chunk_size: int = 10_000,
    marker_grace: float = 10.0,
    logger: logging.Logger | None = None,
) -> RestoreStats:
    """Bring ``store`` up to the end (LSO) of its ``changelog`` partition.

    ``chunk_size`` bounds the records per atomic store batch. ``marker_grace`` is how long
    a stored offset at or past the LSO waits for pending commit markers before the store
    is called stale (see :func:`_end_offset`).

    Raises :class:`RestoreError` (retriable) naming the topic and partition when Kafka
    fails; the store then holds a consistent prefix and the next restore resumes from it.
    """
    log = logger or _log
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="none",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    where = f"{changelog.topic}[{changelog.partition}]"
    try:
        await consumer.start()
        consumer.assign([changelog])
        start, end, rebuilt = await _plan_start(consumer, changelog, store, marker_grace, log)
        consumer.seek(changelog, start)
        progress = _Progress(changelog, start, end, progress_interval, log)
        position = await _copy(consumer, changelog, store, end, chunk_size, progress)
        progress.tick(position, final=True)
    except KafkaError as exc:
        raise RestoreError(
            f"Restoring table changelog {where} failed: {exc!r}. The store keeps what was "
            f"applied so far; the restore is retried from there."
        ) from exc
    finally:
        await consumer.stop()
    return RestoreStats(
        topic=changelog.topic,
        partition=changelog.partition,
        records=progress.records,
        seconds=time.monotonic() - progress.began,
        start_offset=start,
        end_offset=position,
        rebuilt=rebuilt,
    )


async def _plan_start(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    store: PartitionStore,
    marker_grace: float,
    log: Any,
) -> tuple[int, int, bool]:
    """Return (first offset to read, target end offset, whether the store was wiped)."""
    begin = (await consumer.beginning_offsets([tp]))[tp]
    end = await _end_offset(consumer, tp, store.changelog_offset, marker_grace)
    stored = store.changelog_offset
    if stored is None:
        return begin, end, False
    if begin <= stored + 1 <= end:
        return stored + 1, end, False
    log.warning(
        "Table store %r is stale: it holds changelog %s[%d] up to offset %d, but the "
        "changelog now spans offsets %d to %d (recreated or truncated topic?). Wiping it "
        "and restoring from the start of the changelog.",
        store,
        tp.topic,
        tp.partition,
        stored,
        begin,
        end,
    )
    await asyncio.to_thread(store.reset)
    return begin, end, True


async def _end_offset(
    consumer: AIOKafkaConsumer, tp: TopicPartition, stored: int | None, grace: float
) -> int:
    """The LSO, waiting briefly when the stored offset is not yet below it.

    EndTxn returns before the coordinator has written the commit markers, so right after a
    commit the LSO may still sit at or below the offset the store just applied. Give the
    markers a grace period before calling the store stale.
    """
    deadline = time.monotonic() + grace
    while True:
        end: int = (await consumer.end_offsets([tp]))[tp]
        if stored is None or stored < end or time.monotonic() >= deadline:
            return end
        await asyncio.sleep(0.1)


async def _copy(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    store: PartitionStore,
    end: int,
    chunk_size: int,
    progress: _Progress,
) -> int:
    """Apply records until the position reaches ``end``; return the final position."""
    position: int = await consumer.position(tp)
    chunks = 0
    while position < end:
        # Short polls: a fetch that returns only a transaction marker moves the position
        # but yields no record, and getmany would wait out its whole timeout for one.
        batches = await consumer.getmany(tp, timeout_ms=50, max_records=chunk_size)
        records = batches.get(tp, [])
        if records:
            writes: dict[bytes, bytes | None] = {}
            for record in records:
                if record.key is None:
                    raise RestoreError(
                        f"Changelog {tp.topic}[{tp.partition}] has a record without a key "
                        f"at offset {record.offset}; it was not written by eoflow."
                    )
                writes[record.key] = record.value
            await asyncio.to_thread(store.apply, writes, records[-1].offset)
            progress.records += len(records)
            chunks += 1
            if chunks == 1:
                fault_point("during_restore")
        position = await consumer.position(tp)
        progress.tick(position)
    return position
