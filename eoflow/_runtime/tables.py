"""The worker's side of tables: overlays per partition, stores, restore, apply after commit.

Implements :class:`eoflow._table.TableBackend`. Writes go to the overlay of the event's
partition; the commit sends one changelog record per key written in the interval (the
last value wins, which is what a compacted changelog keeps anyway), and after EndTxn
each overlay and its last changelog offset go into the store in one atomic batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import TopicPartition

from eoflow._settings import Settings
from eoflow._state import (
    MemoryPartitionStore,
    Overlay,
    PartitionStore,
    StoreIdentity,
    open_or_rebuild,
    store_path,
)
from eoflow._state.restore import restore_partition
from eoflow._table import Table
from eoflow._transport.admin import DEFAULT_MAX_MESSAGE_BYTES
from eoflow._transport.batching import check_record_size, record_size
from eoflow._transport.producer import SendFuture
from eoflow.errors import TableUsageError

__all__ = ["ChangelogSend", "TableManager"]

log = logging.getLogger(__name__)

#: ``(topic, partition, records, max_bytes) -> [(batch future, count)]``: changelog
#: batches in the transaction, none larger than ``max_bytes``.
ChangelogSend = Callable[[str, int, Iterable[tuple[bytes, bytes | None]], int],
                         Awaitable[list[tuple[SendFuture, int]]]]


@dataclass
class _Flushed:
    overlay: Overlay
    last: SendFuture  # the partition's last batch
    count: int  # records in that batch

    @property
    def last_offset(self) -> int:
        return int(self.last.result().offset) + self.count - 1


class TableManager:
    """Owns the stores and overlays of the table partitions this worker is assigned."""

    def __init__(self, settings: Settings, tables: dict[str, Table[Any, Any]],
                 partition_counts: dict[str, int], max_bytes: Mapping[str, int]) -> None:
        self._settings = settings
        self._tables = tables
        self._counts = partition_counts
        self._changelogs = {name: settings.changelog_topic(name) for name in tables}
        self._limits = {name: max_bytes.get(topic, DEFAULT_MAX_MESSAGE_BYTES)
                        for name, topic in self._changelogs.items()}
        self._overlays: dict[tuple[str, int], Overlay] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._flushed: list[_Flushed] = []

    # -- TableBackend ---------------------------------------------------------------
    def _overlay(self, table: str, partition: int) -> Overlay:
        try:
            return self._overlays[(table, partition)]
        except KeyError:
            raise TableUsageError(
                f"table {table!r} partition {partition} is not assigned to this worker (the "
                f"table has {self._counts.get(table)} partitions); is the table "
                "co-partitioned with the topic of the event being processed?") from None

    def get(self, table: str, partition: int, key: bytes) -> bytes | None:
        return self._overlay(table, partition).get(key)

    def set(self, table: str, partition: int, key: bytes, value: bytes | None) -> None:
        overlay = self._overlay(table, partition)
        check_record_size(self._changelogs[table], partition, key, record_size(key, value),
                          self._limits[table])
        if value is None:
            overlay.delete(key)
        else:
            overlay.set(key, value)
        self._dirty.add((table, partition))

    def partitions(self, table: str) -> list[int]:
        return sorted(p for (t, p) in self._overlays if t == table)

    def items(self, table: str, partition: int) -> Iterator[tuple[bytes, bytes]]:
        return self._overlay(table, partition).items()

    # -- assignment -----------------------------------------------------------------
    async def assign(self, partitions: Iterable[int]) -> None:
        """Open and restore every table partition in ``partitions`` not open yet.

        Returns when each has caught up with its changelog: no event of these partitions
        may be processed before.
        """
        for name, table in self._tables.items():
            for partition in sorted(set(partitions)):
                if partition >= self._counts[name] or (name, partition) in self._overlays:
                    continue
                store = await asyncio.to_thread(self._open_store, table, partition)
                try:
                    await self._restore(name, partition, store)
                except BaseException:
                    store.close()  # a retry must be able to open it again (RocksDB lock)
                    raise
                self._overlays[(name, partition)] = Overlay(store)

    def _open_store(self, table: Table[Any, Any], partition: int) -> PartitionStore:
        identity = StoreIdentity(self._settings.app_id, table.name, partition,
                                 self._counts[table.name])
        if table.store == "memory://":
            return MemoryPartitionStore(identity)
        path = store_path(self._settings.datadir, table.name, partition)
        return open_or_rebuild(path, identity, logger=log)

    async def _restore(self, table: str, partition: int, store: PartitionStore) -> None:
        tp = TopicPartition(self._changelogs[table], partition)
        await restore_partition(self._settings.bootstrap, tp, store, logger=log)

    async def catch_up(self) -> None:
        """Re-read the changelog of every open partition from its stored offset.

        Used after a commit whose outcome is unknown: if it did commit, the store is
        behind its changelog by exactly that transaction.
        """
        for (table, partition), overlay in list(self._overlays.items()):
            overlay.discard()
            await self._restore(table, partition, overlay.store)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Close the stores of revoked partitions (their overlays must be empty)."""
        gone = set(partitions)
        for key in [k for k in self._overlays if k[1] in gone]:
            self._overlays.pop(key).store.close()
            self._dirty.discard(key)

    def close(self) -> None:
        """Close every store; idempotent."""
        self.revoke([p for _, p in self._overlays])

    # -- commit cycle ---------------------------------------------------------------
    async def flush(self, send: ChangelogSend) -> list[SendFuture]:
        """Send this interval's changelog records; returns their futures."""
        futures: list[SendFuture] = []
        for table, partition in sorted(self._dirty):
            overlay = self._overlays[(table, partition)]
            writes = overlay.writes()
            if not writes:
                continue
            topic = self._changelogs[table]
            batches = await send(topic, partition, writes.items(), self._limits[table])
            futures.extend(fut for fut, _ in batches)
            self._flushed.append(_Flushed(overlay, *batches[-1]))
        return futures

    def note_offsets(self) -> None:
        """After every flushed send succeeded: remember each overlay's last offset."""
        for flushed in self._flushed:
            flushed.overlay.note_changelog_offset(flushed.last_offset)

    async def apply(self) -> None:
        """After EndTxn: write each overlay and its changelog offset in one batch."""
        flushed, self._flushed = self._flushed, []
        self._dirty.clear()
        for item in flushed:
            await asyncio.to_thread(item.overlay.commit_to_store)

    def discard(self) -> None:
        """The transaction aborted: forget every pending write."""
        for key in self._dirty:
            if key in self._overlays:
                self._overlays[key].discard()
        self._dirty.clear()
        self._flushed.clear()

    @property
    def has_pending(self) -> bool:
        return bool(self._dirty)
