"""An in-memory :class:`~eoflow._state.base.PartitionStore`: tests and disk-less tables."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping

from eoflow._faults import fault_point
from eoflow._state.base import StoreIdentity, check_offset_advances
from eoflow._state.errors import StateError

__all__ = ["MemoryPartitionStore"]


class MemoryPartitionStore:
    """A :class:`PartitionStore` in a dict: for tests and for tables that need no disk.

    Behaves exactly like :class:`RocksDBPartitionStore` except that nothing survives the
    process.
    """

    def __init__(self, identity: StoreIdentity) -> None:
        self._identity = identity
        self._data: dict[bytes, bytes] = {}
        self._offset: int | None = None
        self._owned_at: float | None = None
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryPartitionStore({self._identity.describe()})"

    @property
    def identity(self) -> StoreIdentity:
        return self._identity

    @property
    def changelog_offset(self) -> int | None:
        return self._offset

    @property
    def owned_at(self) -> float | None:
        return self._owned_at

    def touch(self) -> None:
        self._owned_at = time.time()

    def get(self, key: bytes) -> bytes | None:
        self._require_open()
        return self._data.get(key)

    def estimate_keys(self) -> int:
        return len(self._data)

    def items(self, start: bytes | None = None,
              stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            self._require_open()
            snapshot = sorted((k, v) for k, v in self._data.items()
                              if (start is None or k >= start) and (stop is None or k < stop))
        return iter(snapshot)

    def __len__(self) -> int:
        return len(self._data)

    def apply(self, writes: Mapping[bytes, bytes | None], changelog_offset: int) -> None:
        with self._lock:
            self._require_open()
            check_offset_advances(self._offset, changelog_offset, repr(self))
            fault_point("before_store_write")
            data = dict(self._data)
            for key, value in writes.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
            self._data, self._offset = data, changelog_offset
            self._owned_at = time.time()

    def reset(self) -> None:
        with self._lock:
            self._require_open()
            self._data, self._offset, self._owned_at = {}, None, None

    def close(self) -> None:
        self._closed = True

    def _require_open(self) -> None:
        if self._closed:
            raise StateError(f"{self!r} is closed")
