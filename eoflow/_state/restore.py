"""Restore a table partition's store from its changelog topic partition.

The changelog is written in transactions. Under ``read_committed`` a reader sees records
up to the last stable offset (LSO): below the first record of the oldest transaction that
is still open. Committed records *above* an open transaction exist but cannot be read
until it ends; a worker killed after flushing its changelog records (and restarted with
another instance id) leaves such a transaction open until ``transaction_timeout``. So the
end of a changelog is its **high watermark** (HW), not the LSO:

* a store is stale (topic recreated or truncated, store from another cluster) only when
  its offset is at or past the HW, or below the log start; a store past the LSO but below
  the HW holds committed records the LSO hides, and is kept;
* restore reads until its position reaches the HW seen at the start. Every record below
  that HW is committed or aborted by then, or the transaction holding it is still open:
  the read waits (position stuck at the LSO) until the broker ends it, at the latest
  after the transaction timeout; past ``max_wait`` it raises :class:`RestoreError`
  (retriable), keeping what it applied.

Steps of :func:`restore`:

1. Read the partition's log start offset and high watermark.
2. Decide where to start (:func:`plan_start`); wipe a stale store.
3. Copy records in chunks, each chunk applied with its last offset in one atomic store
   batch off the event loop; ``value is None`` is a tombstone. Records of aborted
   transactions are never returned under ``read_committed``.
4. Log progress every ``progress_interval`` seconds and once at the end; return stats.

The reader (:class:`ChangelogReader`) is the transport's; this module has no Kafka client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eoflow._faults import fault_point
from eoflow._state.base import PartitionStore
from eoflow._state.errors import RestoreError

__all__ = ["ChangelogReader", "RestoreStats", "plan_start", "restore"]

_log = logging.getLogger(__name__)


class ChangelogRecord(Protocol):
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class ChangelogReader(Protocol):
    """Reads changelog partitions ``read_committed``; raises RestoreError on Kafka errors."""

    async def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        """``(log start offset, high watermark)`` of the partition."""
        ...

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read this partition only, from ``offset``."""
        ...

    async def read(self, topic: str, partition: int, max_records: int,
                   timeout: float) -> tuple[Sequence[ChangelogRecord], int]:
        """Committed records from the position on, and the position after them."""
        ...


@dataclass(frozen=True)
class RestoreStats:
    """What one restore did."""

    topic: str
    partition: int
    records: int  #: changelog records applied (transaction markers not counted)
    seconds: float
    start_offset: int  #: first changelog offset read
    end_offset: int  #: position reached (>= the high watermark taken at the start)
    rebuilt: bool  #: True when a stale store was wiped and restored from scratch

    @property
    def records_per_second(self) -> float:
        """Apply rate over the whole restore."""
        return self.records / self.seconds if self.seconds > 0 else float(self.records)


#: ``(records applied since the last call, offsets left to the target)``, for metrics.
ProgressHook = Callable[[int, int], None]


class _Progress:
    """Rate-limited progress logging for one restore; every tick goes to the hook."""

    def __init__(self, where: str, start: int, end: int, interval: float, log: Any,
                 hook: ProgressHook | None = None):
        self._where, self._start, self._end = where, start, end
        self._interval, self._log = interval, log
        self.began = time.monotonic()
        self._next = self.began + interval
        self.records = 0
        self._reported = 0
        self._hook = hook

    def tick(self, position: int, *, final: bool = False) -> None:
        if self._hook is not None:
            self._hook(self.records - self._reported, max(self._end - position, 0))
            self._reported = self.records
        now = time.monotonic()
        if not final and now < self._next:
            return
        self._next = now + self._interval
        elapsed = max(now - self.began, 1e-9)
        span = max(self._end - self._start, 1)
        percent = min(100.0, 100.0 * (position - self._start) / span)
        self._log.info(
            "%s changelog %s: %d records in %.1fs (%.0f records/s), offset %d of %d (%.1f%%)",
            "Restored" if final else "Restoring", self._where, self.records, elapsed,
            self.records / elapsed, position, self._end,
            percent if self._end > self._start else 100.0)


def plan_start(stored: int | None, log_start: int, high_watermark: int) -> int | None:
    """The first offset to read, or None when the store is stale and must be wiped.

    ``stored`` is the offset of the last record the store applied. It is below the high
    watermark whenever that record is still in the log; at or past it, the log is not the
    one the store was built from. Below the log start, records it never saw were deleted.
    """
    if stored is None:
        return log_start
    if log_start <= stored + 1 <= high_watermark:
        return stored + 1
    return None


async def restore(
    reader: ChangelogReader,
    topic: str,
    partition: int,
    store: PartitionStore,
    *,
    max_wait: float = 90.0,
    progress_interval: float = 5.0,
    chunk_size: int = 10_000,
    logger: logging.Logger | None = None,
    on_progress: ProgressHook | None = None,
) -> RestoreStats:
    """Bring ``store`` up to the high watermark of its changelog partition.

    ``max_wait`` bounds how long the position may stand still below the target (an open
    transaction holds the LSO); give it more than the producers' transaction timeout.
    Raises :class:`RestoreError` (retriable) naming the topic and partition; the store
    then holds a consistent prefix and the next restore resumes from it. ``on_progress``
    hears of every chunk: records applied, and offsets left to the target.
    """
    log = logger or _log
    where = f"{topic}[{partition}]"
    log_start, target = await reader.bounds(topic, partition)
    start = plan_start(store.changelog_offset, log_start, target)
    rebuilt = start is None
    if start is None:
        log.warning(
            "Table store %r is stale: it holds changelog %s up to offset %s, but the "
            "changelog now spans offsets %d to %d (recreated or truncated topic?). Wiping it "
            "and restoring from the start of the changelog.",
            store, where, store.changelog_offset, log_start, target)
        await asyncio.to_thread(store.reset)
        start = log_start
    await reader.seek(topic, partition, start)
    progress = _Progress(where, start, target, progress_interval, log, on_progress)
    progress.tick(start)
    position = await _copy(reader, topic, partition, store, start, target, chunk_size,
                           max_wait, progress)
    progress.tick(position, final=True)
    return RestoreStats(topic, partition, progress.records, time.monotonic() - progress.began,
                        start, position, rebuilt)


async def _copy(reader: ChangelogReader, topic: str, partition: int, store: PartitionStore,
                position: int, target: int, chunk_size: int, max_wait: float,
                progress: _Progress) -> int:
    """Apply records until the position reaches ``target``; return the final position."""
    chunks = 0
    stalled_since = time.monotonic()
    while position < target:
        # Short polls: a fetch that returns only a transaction marker moves the position
        # but yields no record, and a long poll would wait out its timeout for one.
        records, new_position = await reader.read(topic, partition, chunk_size, 0.05)
        if records:
            writes: dict[bytes, bytes | None] = {}
            for record in records:
                if record.key is None:
                    raise RestoreError(
                        f"Changelog {topic}[{partition}] has a record without a key at "
                        f"offset {record.offset}; it was not written by eoflow.")
                writes[record.key] = record.value
            await asyncio.to_thread(store.apply, writes, records[-1].offset)
            progress.records += len(records)
            chunks += 1
            if chunks == 1:
                fault_point("during_restore")
        now = time.monotonic()
        if new_position > position:
            position, stalled_since = new_position, now
        elif now - stalled_since > max_wait:
            raise RestoreError(
                f"Restoring changelog {topic}[{partition}]: committed records stay "
                f"unreadable at offset {position} (high watermark {target}) for "
                f"{max_wait:.0f}s; a transaction on the changelog is still open. The store "
                "keeps what was applied; the restore is retried from there.")
        progress.tick(position)
    return position
