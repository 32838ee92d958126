"""Pending table writes of the current transaction, read-your-writes over a store.

Table writes never reach the store before their transaction commits (invariant 3). During
a commit interval they collect in an :class:`Overlay`, one per table partition; reads see
the overlay first and fall back to the committed store.

::

    OPEN ──prepare()──► PREPARED ──write_to_store(), discard() / discard()──► OPEN

``prepare()`` is called when the interval is sealed for its commit: from then until the
store holds its writes (after EndTxn) or they are thrown away (abort), a write would reach
the store without a changelog record, so the overlay refuses it. After EndTxn(commit) the
runtime calls :meth:`Overlay.write_to_store` (off the event loop), then
:meth:`Overlay.discard`; on abort only the latter.

While a sealed overlay commits, the next interval's writes go to a new overlay stacked on
it (``below``): reads see the new writes, then the sealed ones, then the store. Once the
sealed overlay is in the store, :meth:`Overlay.settle` drops it from the stack.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from enum import Enum
from typing import Final

from eoflow._state.base import PartitionStore
from eoflow._state.errors import StateError

__all__ = ["Overlay"]


class _Tombstone:
    """Marks a key deleted in the overlay (distinct from any bytes value)."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETED: Final = _Tombstone()


class OverlayState(Enum):
    OPEN = "open"  # takes writes
    PREPARED = "prepared"  # flushed to the changelog; refuses writes until apply or discard


class Overlay:
    """Uncommitted writes for one table partition over its committed :class:`PartitionStore`.

    Not thread-safe: used from the event loop only. :meth:`write_to_store` may run in a
    worker thread while the event loop only reads (the overlay is sealed then).
    """

    def __init__(self, store: PartitionStore, below: Overlay | None = None) -> None:
        self._store = store
        #: The sealed overlay of the interval being committed, while it is not in the
        #: store yet: reads fall through to it before the store.
        self.below = below
        self._pending: dict[bytes, bytes | _Tombstone] = {}
        self._last_offset: int | None = None
        self.state = OverlayState.OPEN
        #: The earliest stream time (ms) at which a window of this partition may close or
        #: expire: a hint the table runtime keeps so that most events skip the check (and
        #: the range read). None: unknown (look). Forgotten with the pending writes.
        self.due_ms: int | None = None
        #: The partition's stream time (ms) as the table runtime last read or moved it;
        #: None: read it. Forgotten with the pending writes, so it never outlives the
        #: transaction it was moved in.
        self.stream_ms: int | None = None
        #: Whether ``stream_ms`` moved in this transaction: the table runtime writes its
        #: record once, when the interval flushes, not on every event that moves it.
        self.stream_moved = False

    def __repr__(self) -> str:
        return f"Overlay({len(self._pending)} pending, store={self._store!r})"

    @property
    def store(self) -> PartitionStore:
        """The committed store under this overlay."""
        return self._store

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to commit: no writes and no changelog offset noted."""
        return not self._pending and self._last_offset is None

    @property
    def last_changelog_offset(self) -> int | None:
        """Highest changelog offset noted this interval, or None."""
        return self._last_offset

    def pending(self, key: bytes) -> tuple[bool, bytes | None]:
        """``(True, value or None if deleted)`` for a key written this interval (or in the
        sealed interval below it, not in the store yet)."""
        found = self._pending.get(key)
        if found is None:
            return (False, None) if self.below is None else self.below.pending(key)
        return True, None if isinstance(found, _Tombstone) else found

    def get(self, key: bytes) -> bytes | None:
        """The value as this transaction sees it: pending write, else the sealed
        interval's, else committed value."""
        pending = self._pending.get(key)
        if pending is None:
            return self._store.get(key) if self.below is None else self.below.get(key)
        return None if isinstance(pending, _Tombstone) else pending

    @property
    def has_writes(self) -> bool:
        return bool(self._pending)

    def set(self, key: bytes, value: bytes) -> None:
        """Write ``key`` in this transaction."""
        if self.state is OverlayState.PREPARED:
            self._refuse(key)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Delete ``key`` in this transaction (also hides the committed value)."""
        if self.state is OverlayState.PREPARED:
            self._refuse(key)
        self._pending[key] = _DELETED

    def prepare(self) -> None:
        """The interval is sealed for its commit: refuse more writes until apply or
        discard."""
        self.state = OverlayState.PREPARED

    def stack(self) -> Overlay:
        """Seal this overlay and return the overlay the next interval writes to, stacked
        on it (the stream-time and due hints carry over: they describe the same state)."""
        self.prepare()
        above = Overlay(self._store, below=self)
        above.stream_ms, above.due_ms = self.stream_ms, self.due_ms
        return above

    def settle(self) -> None:
        """The overlay below is in the store now (or was thrown away): read the store."""
        below, self.below = self.below, None
        if below is not None:
            below.discard()

    def _refuse(self, key: bytes) -> None:
        raise StateError(
            f"{self!r}: write of key {key[:60]!r} after the interval's changelog records "
            "were sent; it would reach the store without a changelog record")

    def items(self, start: bytes | None = None,
              stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Merged view in ascending key order: committed items overridden by pending ones;
        ``start <= key < stop`` when given."""
        pending = sorted((k, v) for k, v in self._pending.items()
                         if (start is None or k >= start) and (stop is None or k < stop))
        under = (self._store.items(start, stop) if self.below is None
                 else self.below.items(start, stop))
        merged = heapq.merge(
            ((key, 0, value) for key, value in pending),
            ((key, 1, value) for key, value in under),
        )
        last_key: bytes | None = None
        for key, _rank, value in merged:
            if key == last_key:
                continue  # the pending entry (rank 0) came first and wins
            last_key = key
            if not isinstance(value, _Tombstone):
                yield key, value

    def writes(self) -> dict[bytes, bytes | None]:
        """The pending writes as the store takes them (None = delete)."""
        return {
            key: None if isinstance(value, _Tombstone) else value
            for key, value in self._pending.items()
        }

    def note_changelog_offset(self, offset: int) -> None:
        """Record the offset a changelog record of this interval got; keeps the highest."""
        if self._last_offset is None or offset > self._last_offset:
            self._last_offset = offset

    def discard(self) -> None:
        """Forget everything pending (the transaction aborted), and the sealed overlay
        below (its interval aborted too, or is in the store already)."""
        self.settle()
        self._pending.clear()
        self._last_offset = None
        self.state = OverlayState.OPEN
        self.due_ms = None
        self.stream_ms = None
        self.stream_moved = False

    def write_to_store(self) -> None:
        """Apply the pending writes and the last changelog offset in one atomic batch.

        Call only after the transaction committed. Does nothing when the overlay is empty.
        Raises :class:`StateError` when there are writes but no changelog offset was noted
        (every committed table write must have a changelog record). The writes stay
        readable here until :meth:`discard`: this runs off the event loop while the next
        interval reads through this overlay, and the store takes the batch atomically, so a
        read sees the value either here or there.
        """
        if self.is_empty:
            return
        if self._last_offset is None:
            raise StateError(
                f"{self!r} has {len(self._pending)} writes but no changelog offset; every "
                f"table write must be sent to the changelog before its transaction commits"
            )
        self._store.apply(self.writes(), self._last_offset)
