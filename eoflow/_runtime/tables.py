"""The worker's side of tables: overlays per partition, stores, restore, apply after commit.

Implements :class:`eoflow._table.TableBackend`. Writes go to the overlay of the event's
partition, and only while an agent holds that event; the commit sends one changelog
record per key written in the interval (the last value wins, which is what a compacted
changelog keeps anyway), and after EndTxn each overlay and its last changelog offset go
into the store in one atomic batch.

Which table partitions a worker owns follows from its assignment: partition ``p`` of a
table with ``N`` partitions belongs to whoever is assigned partition ``p`` of the source
topics with ``N`` partitions (the range assignor gives equally partitioned topics the same
numbers on the same member). A table is only usable from events of topics with its own
partition count; anything else would write a key to another partition than its record's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from eoflow._runtime.globals import GlobalView
from eoflow._settings import Settings
from eoflow._state import (
    MemoryPartitionStore,
    Overlay,
    PartitionStore,
    StoreIdentity,
    open_or_rebuild,
    store_path,
)
from eoflow._state.restore import ChangelogReader, restore
from eoflow._stream import Event, current_event, current_stream
from eoflow._table import Table
from eoflow._transport.admin import DEFAULT_MAX_MESSAGE_BYTES
from eoflow._transport.base import SendFuture, TopicPartition
from eoflow._transport.batching import check_record_size, record_size
from eoflow._windows import (
    STREAM_TIME_KEY,
    WINDOWS_END,
    Sliding,
    Window,
    WindowedTable,
    end_prefix,
    pack_sessions,
    session_index_key,
    split_key,
    unpack_sessions,
    window_key,
)
from eoflow.errors import OutsideEventError, TableUsageError

__all__ = ["ChangelogSend", "Flushed", "ReaderFactory", "TableManager"]

log = logging.getLogger(__name__)

#: ``(topic, partition, records, max_bytes) -> [(batch future, count)]``: changelog
#: batches in the transaction, none larger than ``max_bytes``.
ChangelogSend = Callable[[str, int, Iterable[tuple[bytes, bytes | None]], int],
                         Awaitable[list[tuple[SendFuture, int]]]]
#: Opens a changelog reader for restores (an async context manager).
ReaderFactory = Callable[[], contextlib.AbstractAsyncContextManager[ChangelogReader]]


@dataclass
class Flushed:
    """The changelog batches of one overlay in this interval: ``(future, records)``."""

    overlay: Overlay
    batches: list[tuple[SendFuture, int]]

    @property
    def last_offset(self) -> int:
        """Offset of the last record (a future resolves to its batch's first offset)."""
        last, count = self.batches[-1]
        return int(last.result().offset) + count - 1


class TableManager:
    """Owns the stores and overlays of the table partitions this worker is assigned."""

    def __init__(self, settings: Settings, tables: dict[str, Table[Any, Any]],
                 topic_counts: Mapping[str, int], max_bytes: Mapping[str, int],
                 retention: Mapping[str, float], reader: ReaderFactory,
                 on_fatal: Callable[[BaseException, bool], None],
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._tables = tables
        self._topic_counts = topic_counts
        self._changelogs = {name: settings.changelog_topic(name) for name in tables}
        self._counts = {name: topic_counts[topic] for name, topic in self._changelogs.items()}
        self._limits = {name: max_bytes.get(topic, DEFAULT_MAX_MESSAGE_BYTES)
                        for name, topic in self._changelogs.items()}
        #: ``delete.retention.ms`` of each changelog, in seconds (store aging).
        self._retention = {name: retention.get(topic, 86400.0)
                           for name, topic in self._changelogs.items()}
        self._reader = reader
        self._on_fatal = on_fatal
        self._clock = clock
        self._overlays: dict[tuple[str, int], Overlay] = {}
        self._usable: set[tuple[str, str]] = set()  # (table, topic) pairs checked
        #: Restore progress per table partition: records restored (every restore), and
        #: changelog offsets left in the restore under way (0 once restored).
        self.restored: dict[tuple[str, int], int] = {}
        self.remaining: dict[tuple[str, int], int] = {}
        #: The committed views of the global tables (every partition).
        self.views = {name: GlobalView(name, self._changelogs[name], self._counts[name], reader)
                      for name, table in tables.items() if table.global_}

    # -- TableBackend ---------------------------------------------------------------
    def partition_of(self, table: str, event: Event[Any, Any]) -> int:
        """The table partition of ``event``: its own, once its topic is co-partitioned."""
        if (table, event.topic) not in self._usable:
            count = self._topic_counts.get(event.topic)
            if count != self._counts[table]:
                raise TableUsageError(
                    f"table {table!r} has {self._counts[table]} partitions, but it is used "
                    f"while processing {event.describe()}, a topic with {count} partitions: "
                    "a key's table partition would not be its record's. Use the table only "
                    "from agents on topics with the same partition count, or repartition.")
            self._usable.add((table, event.topic))
        return event.partition

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
        self._check_writer(table, key)
        overlay = self._overlay(table, partition)
        check_record_size(self._changelogs[table], partition, key, record_size(key, value),
                          self._limits[table])
        if value is None:
            overlay.delete(key)
        else:
            overlay.set(key, value)

    def _check_writer(self, table: str, key: bytes) -> None:
        """Writes belong to the transaction of the event being processed, and only to it."""
        event = current_event.get()
        if event is None:
            raise TableUsageError(
                f"table {table!r}: writing key {key[:60]!r} outside an event. A table write "
                "must belong to the transaction of the event that causes it: write from an "
                "agent while it processes an event (reads of table.partition(n) are fine).")
        stream = current_stream.get()
        if stream is not None and not stream.holds(event):
            error = OutsideEventError(
                f"table {table!r}: write of key {key[:60]!r} from a task spawned by agent "
                f"{stream.agent!r} after the agent finished {event.describe()}; await such "
                "tasks before taking the next event.")
            self._on_fatal(error, True)
            raise error

    def partitions(self, table: str) -> list[int]:
        return sorted(p for (t, p) in self._overlays if t == table)

    def global_get(self, table: str, key: bytes) -> bytes | None:
        event = current_event.get()
        if event is not None and self._topic_counts.get(event.topic) == self._counts[table]:
            overlay = self._overlays.get((table, event.partition))
            if overlay is not None:
                written, value = overlay.pending(key)
                if written:
                    return value
        return self.views[table].get(key)

    def global_items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        return self.views[table].items()

    async def views_ready(self) -> None:
        """Until every global table has read its changelog once (dispatch waits)."""
        for view in self.views.values():
            await view.ready.wait()

    # -- windowed tables (see eoflow._windows) ---------------------------------------------
    def clock(self) -> float:
        return self._clock()

    def stream_time(self, table: str, partition: int) -> float:
        return (self._stream_time_ms(self._overlay(table, partition)) or 0) / 1000

    @staticmethod
    def _stream_time_ms(overlay: Overlay) -> int | None:
        if overlay.stream_ms is None:  # once per interval: then window_advance keeps it
            raw = overlay.get(STREAM_TIME_KEY)
            overlay.stream_ms = None if raw is None else int(raw)
        return overlay.stream_ms

    def window_advance(self, windowed: WindowedTable[Any, Any], partition: int, t: float,
                       windows: list[Window]) -> list[Window]:
        """Move the partition's stream time to ``t`` if that is later (a write, in the
        changelog with the data); return the windows of ``windows`` not closed yet. Closing
        and expiring what the move passed runs at the end of the event, inside it."""
        overlay = self._overlay(windowed.name, partition)
        before = self._stream_time_ms(overlay)
        now = round(t * 1000)
        if before is None or now > before:
            # Its record is written at the flush (flush): once per interval, not per event.
            # The caller writes the event's window next, which checks the writer.
            overlay.stream_ms, overlay.stream_moved = now, True
            # Most moves pass no window end: the due hint says when the next one may.
            if before is None or overlay.due_ms is None or overlay.due_ms <= now:
                closes, expires = self._ends_passed(windowed, before, now)
                if closes or expires:
                    self._defer(windowed, lambda: self._close_and_expire(
                        windowed, partition, before, now, closes=closes, expires=expires))
                if not windowed.spec.indexed:
                    overlay.due_ms = self._grid_due(windowed, now)
            stream_ms = now
        else:
            stream_ms = before
        grace_ms = windowed.grace * 1000
        if windowed.spec.inclusive_end:  # a session's end is an event's time (in ms)
            return [w for w in windows if round(w.end * 1000 + grace_ms) >= stream_ms]
        if windows and windows[0].end * 1000 + grace_ms > stream_ms:
            return windows  # the oldest is open, so all are (most events)
        return [w for w in windows if w.end * 1000 + grace_ms > stream_ms]

    @staticmethod
    def _ends_passed(windowed: WindowedTable[Any, Any], before: int | None,
                     now: int) -> tuple[bool, bool]:
        """Whether moving stream time from ``before`` to ``now`` (ms), a move the due hint
        let through, may close windows (with a close hook) and expire windows. Most moves
        pass no window end: then there is no work at the end of the event, and no range
        read (a RocksDB seek, a sort of the interval's writes). Sessions and sliding
        contributions end anywhere: for them the hint alone decides."""
        hook = windowed.on_window_close is not None
        spec = windowed.spec
        if before is None or spec.indexed:
            return hook, True
        grace, expires = round(windowed.grace * 1000), round(windowed.expires * 1000)
        return (hook and spec.ends_between(before - grace, now - grace),
                spec.ends_between(before - expires, now - expires))

    @staticmethod
    def _grid_due(windowed: WindowedTable[Any, Any], now: int) -> int | None:
        """The stream time (ms) from which a move passes the next window end plus
        ``expires`` (or plus ``grace``, with a close hook): until then no window closes
        or expires. None when window ends are not whole milliseconds (every move looks)."""
        spec = windowed.spec
        expires = round(windowed.expires * 1000)
        first = spec.end_after(now - expires)
        if first is None:
            return None
        due = first + expires
        if windowed.on_window_close is not None:
            grace = round(windowed.grace * 1000)
            closing = spec.end_after(now - grace)
            assert closing is not None  # the same grid as ``first``
            due = min(due, closing + grace)
        return due

    def window_write(self, windowed: WindowedTable[Any, Any], partition: int, key: bytes,
                     windows: list[Window], change: Callable[[Any], Any]) -> list[Window]:
        """Apply ``change`` to ``key``'s value in each of ``windows`` (one writer check, one
        overlay lookup); returns the windows that had no value before."""
        table = windowed.table
        name, codec = windowed.name, table.value_codec
        self._check_writer(name, key)
        overlay = self._overlay(name, partition)
        topic, limit = self._changelogs[name], self._limits[name]
        new: list[Window] = []
        for window in windows:
            stored = window_key(key, window)
            raw = overlay.get(stored)
            value = codec.dumps(change(codec.loads(raw) if raw is not None else table._default()))
            check_record_size(topic, partition, stored, record_size(stored, value), limit)
            overlay.set(stored, value)
            if raw is None:
                new.append(window)
        return new

    def window_late(self, windowed: WindowedTable[Any, Any], key: Any, change: Any,
                    event: Event[Any, Any]) -> None:
        log.debug("late event %s for windowed table %r (key %r): not applied",
                  event.describe(), windowed.name, key)
        hook = windowed.on_late
        if hook is not None:
            self._defer(windowed, lambda: _call(hook, key, event))

    def session_written(self, windowed: WindowedTable[Any, Any], partition: int,
                        end_ms: int) -> None:
        overlay = self._overlay(windowed.name, partition)
        if overlay.due_ms is not None:  # unknown stays unknown: the next move reads
            overlay.due_ms = min(overlay.due_ms, end_ms + self._after_end_ms(windowed))

    @staticmethod
    def _after_end_ms(windowed: WindowedTable[Any, Any]) -> int:
        """How long after its end an indexed window (a session, a sliding contribution)
        has work due: its close (with a close hook), else its expiry."""
        spec = windowed.spec
        if windowed.on_window_close is not None:
            return round((spec.close_tail + windowed.grace) * 1000)
        return round((spec.tail + windowed.expires) * 1000)

    def _defer(self, windowed: WindowedTable[Any, Any],
               work: Callable[[], Awaitable[None]]) -> None:
        scope = current_stream.get()
        if scope is None:
            raise TableUsageError(f"windowed table {windowed.name!r} used outside an agent")
        scope.defer(work)

    async def _close_and_expire(self, windowed: WindowedTable[Any, Any], partition: int,
                                before: int | None, now: int, *, closes: bool,
                                expires: bool) -> None:
        """Stream time moved from ``before`` to ``now`` (ms): if ``closes``, run
        ``on_window_close`` for each window that closed (end + grace passed), oldest
        first; if ``expires``, delete the windows that expired (end + expires passed)."""
        overlay = self._overlay(windowed.name, partition)
        spec = windowed.spec
        grace_ms = round((windowed.grace + spec.close_tail) * 1000)
        expires_ms = round((windowed.expires + spec.tail) * 1000)
        if closes:
            hook = windowed.on_window_close
            low = b"W" if before is None else end_prefix(before - grace_ms + 1)
            closing = list(overlay.items(low, end_prefix(now - grace_ms + 1)))
            codec_k, codec_v = windowed.table.key_codec, windowed.table.value_codec
            for stored, raw in closing:
                split = split_key(stored)
                if split is None:
                    continue
                key, window = codec_k.loads(split[0]), split[1]
                if isinstance(spec, Sliding):  # the window ending at a contribution's time
                    end_ms = round(window.end * 1000)
                    window = Window((end_ms - spec.size_ms) / 1000, window.end)
                    value = windowed.sliding_value(overlay.get, split[0], key,
                                                   end_ms - spec.size_ms, end_ms)
                else:
                    value = codec_v.loads(raw)
                await _call(hook, key, window, value)
        if not expires:
            return
        # Only windows that expired in this move: older ones were deleted when stream time
        # passed them (scanning from the first window key would step over every tombstone
        # they left in RocksDB, on every event). A window written since `before` was open
        # then (end > before - grace), one left over was not expired (end > before - expires).
        low = b"W" if before is None else end_prefix(
            min(before - grace_ms, before - expires_ms) + 1)
        expired = [stored for stored, _ in overlay.items(low, end_prefix(now - expires_ms + 1))]
        for stored in expired:
            overlay.delete(stored)
        if spec.indexed:
            _forget_sessions(overlay, expired)
            overlay.due_ms = _session_due(windowed, overlay, now, grace_ms, expires_ms)

    def items(self, table: str, partition: int) -> Iterator[tuple[bytes, bytes]]:
        return self._overlay(table, partition).items()

    # -- committed state (the web API; never an overlay) ------------------------------
    def committed_get(self, table: str, partition: int, key: bytes) -> bytes | None:
        """The value the store holds: written by a committed transaction, never by the
        open interval (its writes are in the overlay until EndTxn)."""
        if self.views.get(table) is not None:
            return self.views[table].get(key)
        return self._overlay(table, partition).store.get(key)

    def partition_count(self, table: str) -> int:
        return self._counts[table]

    def source_topics(self, table: str) -> list[str]:
        """Topics with the table's partition count (the ones it can be co-partitioned with)."""
        return sorted(t for t, n in self._topic_counts.items() if n == self._counts[table])

    def sizes(self) -> dict[tuple[str, int], int]:
        """About how many keys each open table partition holds (committed)."""
        return {key: overlay.store.estimate_keys() for key, overlay in self._overlays.items()}

    # -- assignment -----------------------------------------------------------------
    def table_partitions(self, assigned: Iterable[TopicPartition]) -> frozenset[tuple[str, int]]:
        """``(table, partition)`` pairs the assignment makes this worker own."""
        return frozenset(
            (name, tp.partition) for tp in assigned for name, n in self._counts.items()
            if n == self._topic_counts.get(tp.topic))

    async def assign(self, assigned: Iterable[TopicPartition]) -> None:
        """Open and restore every table partition the assignment brings, not open yet.

        Returns when each has caught up with its changelog: no event of these partitions
        may be processed before.
        """
        wanted = sorted(self.table_partitions(assigned) - set(self._overlays))
        if not wanted:
            return
        async with self._reader() as reader:
            for name, partition in wanted:
                store = await asyncio.to_thread(self._open_store, name, partition)
                try:
                    await self._restore(reader, name, partition, store)
                    await asyncio.to_thread(store.touch)
                except BaseException:
                    store.close()  # a retry must be able to open it again (RocksDB lock)
                    raise
                self._overlays[(name, partition)] = Overlay(store)

    def _open_store(self, name: str, partition: int) -> PartitionStore:
        table = self._tables[name]
        identity = StoreIdentity(self._settings.app_id, name, partition, self._counts[name])
        if table.store == "memory://":
            return MemoryPartitionStore(identity)
        path = store_path(self._settings.datadir, name, partition)
        store = open_or_rebuild(path, identity, logger=log)
        unowned = None if store.owned_at is None else time.time() - store.owned_at
        if unowned is not None and unowned > self._retention[name]:
            log.warning(
                "Table store %s was last current %.0fs ago, longer than its changelog's "
                "delete.retention.ms (%.0fs): tombstones it never saw may be compacted "
                "away, so it could resurrect deleted keys. Rebuilding it from the changelog.",
                path, unowned, self._retention[name])
            store.reset()
        return store

    async def _restore(self, reader: ChangelogReader, name: str, partition: int,
                       store: PartitionStore) -> None:
        where = (name, partition)

        def progress(applied: int, remaining: int) -> None:
            self.restored[where] = self.restored.get(where, 0) + applied
            self.remaining[where] = remaining

        await restore(reader, self._changelogs[name], partition, store, logger=log,
                      max_wait=self._settings.transaction_timeout + 30.0,
                      on_progress=progress)

    async def catch_up(self) -> None:
        """Re-read the changelog of every open partition from its stored offset.

        Used after a commit whose outcome is unknown, or whose store apply failed: if it
        did commit, the store is behind its changelog by exactly that transaction.
        """
        if not self._overlays:
            return
        async with self._reader() as reader:
            for (name, partition), overlay in list(self._overlays.items()):
                overlay.discard()
                await self._restore(reader, name, partition, overlay.store)

    def revoke(self, revoked: Iterable[TopicPartition]) -> None:
        """Close the stores of the table partitions the revoked partitions owned."""
        for key in sorted(self.table_partitions(revoked) & set(self._overlays)):
            store = self._overlays.pop(key).store
            try:
                store.touch()
            finally:
                store.close()

    def close(self) -> None:
        """Close every store; idempotent."""
        for key in list(self._overlays):
            store = self._overlays.pop(key).store
            try:
                store.touch()
            except Exception as exc:  # a broken store must not keep the others open
                log.warning("closing %r: %r", store, exc)
            finally:
                store.close()

    # -- commit cycle ---------------------------------------------------------------
    def has_writes(self) -> bool:
        """Whether the open interval wrote to any table partition."""
        return any(o.has_writes or o.stream_moved for o in self._overlays.values())

    def seal(self) -> list[tuple[str, int, Overlay]]:
        """End the interval's table writes (commit step 1, after the barrier).

        Each partition's overlay with writes (its stream time's record included) is sealed
        and returned, for :meth:`flush`; the next interval writes to a new overlay stacked
        on it, so agents can go on while this interval commits.
        """
        sealed: list[tuple[str, int, Overlay]] = []
        for (table, partition), overlay in sorted(self._overlays.items(),
                                                  key=lambda item: item[0]):
            if overlay.stream_moved:
                overlay.set(STREAM_TIME_KEY, str(overlay.stream_ms).encode())
                overlay.stream_moved = False
            if overlay.has_writes:
                self._overlays[(table, partition)] = overlay.stack()
                sealed.append((table, partition, overlay))
        return sealed

    async def flush(self, sealed: Iterable[tuple[str, int, Overlay]],
                    send: ChangelogSend) -> list[Flushed]:
        """Send the changelog records of the sealed overlays."""
        flushed: list[Flushed] = []
        for table, partition, overlay in sealed:
            batches = await send(self._changelogs[table], partition, overlay.writes().items(),
                                 self._limits[table])
            flushed.append(Flushed(overlay, batches))
        return flushed

    @staticmethod
    def futures(flushed: Iterable[Flushed]) -> list[SendFuture]:
        return [fut for item in flushed for fut, _ in item.batches]

    @staticmethod
    def note_offsets(flushed: Iterable[Flushed]) -> None:
        """After every flushed send succeeded: remember each overlay's last offset."""
        for item in flushed:
            item.overlay.note_changelog_offset(item.last_offset)

    async def apply(self, flushed: Iterable[Flushed]) -> None:
        """After EndTxn: write each sealed overlay and its changelog offset in one batch
        (off the event loop; the next interval reads through it meanwhile), then let the
        next interval's overlays read the store directly."""
        for item in flushed:
            await asyncio.to_thread(item.overlay.write_to_store)
        for overlay in self._overlays.values():
            overlay.settle()

    def written_changelogs(self) -> list[TopicPartition]:
        """The changelog partitions of the overlays the open interval has written."""
        return [TopicPartition(self._changelogs[table], partition)
                for (table, partition), overlay in self._overlays.items() if overlay.has_writes]

    def discard(self) -> None:
        """The transaction aborted: forget every pending write (sealed ones included)."""
        for overlay in self._overlays.values():
            overlay.discard()


def _forget_sessions(overlay: Overlay, expired: list[bytes]) -> None:
    """Take expired sessions out of their keys' session indexes."""
    gone: dict[bytes, set[tuple[int, int]]] = {}
    for stored in expired:
        split = split_key(stored)
        if split is not None:
            key, window = split
            gone.setdefault(key, set()).add((round(window.end * 1000),
                                             round(window.start * 1000)))
    for key, bounds in gone.items():
        index = session_index_key(key)
        kept = [b for b in unpack_sessions(overlay.get(index)) if b not in bounds]
        if kept:
            overlay.set(index, pack_sessions(kept))
        else:
            overlay.delete(index)


def _session_due(windowed: WindowedTable[Any, Any], overlay: Overlay, now: int,
                 close_ms: int, expires_ms: int) -> int:
    """The stream time (ms) at which the next session of this partition closes (with a
    close hook) or expires: read from the first open and the first unexpired session."""
    due = _NEVER
    if windowed.on_window_close is not None:
        first_open = _first_end(overlay, now - close_ms + 1)
        if first_open is not None:
            due = first_open + close_ms
    first_kept = _first_end(overlay, now - expires_ms + 1)
    if first_kept is not None:
        due = min(due, first_kept + expires_ms)
    return due


def _first_end(overlay: Overlay, low_ms: int) -> int | None:
    """The end (ms) of the first window ending at or after ``low_ms``."""
    for stored, _ in overlay.items(end_prefix(low_ms), WINDOWS_END):
        split = split_key(stored)
        if split is not None:
            return round(split[1].end * 1000)
    return None


_NEVER = 2**62


async def _call(hook: Callable[..., Any], *args: Any) -> None:
    outcome = hook(*args)
    if inspect.isawaitable(outcome):
        await outcome
