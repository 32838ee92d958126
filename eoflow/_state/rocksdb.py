"""A RocksDB :class:`~eoflow._state.base.PartitionStore` (rocksdict), one DB per partition.

Layout, one database per table partition (see :func:`~eoflow._state.base.store_path`)::

    <datadir>/tables/<table>/<partition>/
        column family "default"      table keys -> values (raw bytes)
        column family "eoflow_meta"  b"identity" -> JSON, b"changelog_offset" -> int64 BE,
                                     b"owned_at" -> float64 BE (wall clock, seconds)

The changelog offset lives in its own column family so that it is written in the same
WriteBatch as the data (atomic) without reserving any table key.
"""

from __future__ import annotations

import logging
import shutil
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import cast

from rocksdict import Options, Rdict, WriteBatch

from eoflow._faults import fault_point
from eoflow._state.base import StoreIdentity, check_offset_advances
from eoflow._state.errors import (
    StateError,
    StoreCorruptError,
    StoreLockedError,
    StoreMismatchError,
)

__all__ = ["RocksDBPartitionStore", "open_or_rebuild"]

_META_CF = "eoflow_meta"
_IDENTITY_KEY = b"identity"
_OFFSET_KEY = b"changelog_offset"
_OWNED_AT_KEY = b"owned_at"
_OFFSET = struct.Struct(">q")
_TIME = struct.Struct(">d")

_log = logging.getLogger(__name__)


#: RocksDB deletes a write-ahead log file only once every column family with data in it
#: is flushed, and the meta column family (a few bytes per commit) never fills its
#: memtable: without this bound the log would grow with the stream up to RocksDB's own
#: default (4 x all write buffers, about 1 GB per store). Past it, RocksDB flushes the
#: column families that hold the oldest log.
MAX_TOTAL_WAL_BYTES = 64 * 1024 * 1024


def _db_options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES)
    return options


class RocksDBPartitionStore:
    """A :class:`PartitionStore` in a RocksDB database (rocksdict), one per partition.

    Open it with :meth:`open` (or :func:`open_or_rebuild`); rocksdict errors are translated
    into :class:`StateError` subclasses here. The write-ahead log stays on, so a killed
    process loses nothing that :meth:`apply` returned for.
    """

    def __init__(self, path: Path, identity: StoreIdentity, db: Rdict, offset: int | None,
                 owned_at: float | None = None):
        """Use :meth:`open`; this only wires an already opened and checked database."""
        self._path = path
        self._identity = identity
        self._db: Rdict | None = db
        self._offset = offset
        self._owned_at = owned_at
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"RocksDBPartitionStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._path

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
        with self._lock:
            db = self._require_open()
            now = time.time()
            batch = WriteBatch(raw_mode=True)
            batch.put(_OWNED_AT_KEY, _TIME.pack(now), db.get_column_family_handle(_META_CF))
            db.write(batch)
            self._owned_at = now

    @classmethod
    def open(cls, path: Path | str, identity: StoreIdentity) -> RocksDBPartitionStore:
        """Open the store at ``path``, creating it (with ``identity``) when missing.

        Raises :class:`StoreMismatchError` when the store belongs to something else,
        :class:`StoreCorruptError` when it cannot be read, and :class:`StoreLockedError`
        when another process has it open.
        """
        path = Path(path)
        existed = path.is_dir() and any(path.iterdir())
        if existed and not (path / "CURRENT").is_file():
            raise StoreCorruptError(
                f"Table store at {path} holds files but no RocksDB database (no CURRENT "
                f"file); it is not a store eoflow wrote."
            )
        path.mkdir(parents=True, exist_ok=True)
        db = _open_db(path)
        try:
            if not existed:
                _write_identity(db, identity)
            offset, owned_at = _check_meta(db, path, identity)
        except BaseException:
            db.close()
            raise
        return cls(path, identity, db, offset, owned_at)

    @staticmethod
    def destroy(path: Path | str) -> None:
        """Delete a store's directory and everything in it (the store must be closed)."""
        if Path(path).exists():
            shutil.rmtree(path)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._require_open().get(key)
        return value

    def items(self, start: bytes | None = None,
              stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        pairs = cast(Iterator[tuple[bytes, bytes]], self._require_open().items(from_key=start))
        for key, value in pairs:  # raw mode: bytes keys and values
            if stop is not None and key >= stop:
                return
            yield key, value

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def estimate_keys(self) -> int:
        """RocksDB's own estimate (``rocksdb.estimate-num-keys``): no scan."""
        found = self._require_open().property_int_value("rocksdb.estimate-num-keys")
        return int(found or 0)

    def apply(self, writes: Mapping[bytes, bytes | None], changelog_offset: int) -> None:
        with self._lock:
            db = self._require_open()
            check_offset_advances(self._offset, changelog_offset, repr(self))
            # Before any handle exists: a crash simulated in-process keeps this frame alive,
            # and a live column-family handle would keep the database (and its LOCK) open.
            fault_point("before_store_write")
            self._write(db, writes, changelog_offset)

    def _write(self, db: Rdict, writes: Mapping[bytes, bytes | None],
               changelog_offset: int) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        # Fetched per apply: a held handle would keep the DB (and its LOCK) open.
        meta = db.get_column_family_handle(_META_CF)
        now = time.time()
        batch.put(_OFFSET_KEY, _OFFSET.pack(changelog_offset), meta)
        batch.put(_OWNED_AT_KEY, _TIME.pack(now), meta)
        try:
            db.write(batch)
        except Exception as exc:
            raise StateError(
                f"Writing {len(writes)} table writes up to changelog offset "
                f"{changelog_offset} to {self._path} failed: {exc}. Check free disk "
                f"space and permissions of the data directory."
            ) from exc
        self._offset, self._owned_at = changelog_offset, now

    def reset(self) -> None:
        with self._lock:
            self.close()
            self.destroy(self._path)
            fresh = self.open(self._path, self._identity)
            self._db, self._offset, self._owned_at = fresh._db, None, None

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    def _require_open(self) -> Rdict:
        if self._db is None:
            raise StateError(f"{self!r} is closed")
        return self._db


def _open_db(path: Path) -> Rdict:
    """Open the RocksDB database at ``path``, translating rocksdict's plain exceptions."""
    try:
        return Rdict(str(path), _db_options(), column_families={_META_CF: Options(raw_mode=True)})
    except Exception as exc:
        message = str(exc)
        if "lock" in message.lower():
            raise StoreLockedError(
                f"Table store at {path} is in use by another process ({message}). Stop the "
                f"other worker, or give each worker its own data directory."
            ) from exc
        raise StoreCorruptError(f"Table store at {path} cannot be opened: {message}") from exc


def _write_identity(db: Rdict, identity: StoreIdentity) -> None:
    batch = WriteBatch(raw_mode=True)
    batch.put(_IDENTITY_KEY, identity.to_bytes(), db.get_column_family_handle(_META_CF))
    db.write(batch)


def _check_meta(db: Rdict, path: Path,
                expected: StoreIdentity) -> tuple[int | None, float | None]:
    """Check the stored identity against ``expected``; return the offset and owned_at."""
    meta = db.get_column_family(_META_CF)
    try:
        raw_identity = meta.get(_IDENTITY_KEY)
        raw_offset = meta.get(_OFFSET_KEY)
        raw_owned = meta.get(_OWNED_AT_KEY)
    finally:
        meta.close()  # closes only this view; an open view would keep the LOCK held
    if raw_identity is None:
        raise StoreCorruptError(
            f"Table store at {path} has no identity record; it was not written by eoflow "
            f"or its creation was interrupted."
        )
    try:
        found = StoreIdentity.from_bytes(raw_identity)
        offset = None if raw_offset is None else _OFFSET.unpack(raw_offset)[0]
        owned_at = None if raw_owned is None else _TIME.unpack(raw_owned)[0]
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise StoreCorruptError(f"Table store at {path} has unreadable metadata: {exc}") from exc
    if found != expected:
        raise StoreMismatchError(
            f"Table store at {path} belongs to {found.describe()}, but this worker expects "
            f"{expected.describe()}. If the app id or the partition count changed on "
            f"purpose, stop the worker and delete {path} (or the whole data directory); "
            f"eoflow then rebuilds the table from its changelog topic."
        )
    return offset, owned_at


def open_or_rebuild(
    path: Path | str, identity: StoreIdentity, *, logger: logging.Logger | None = None
) -> RocksDBPartitionStore:
    """Open the store at ``path``; when it is corrupt, wipe it and return a fresh one.

    A fresh store has ``changelog_offset`` None, so the caller restores it from the start
    of the changelog. A corrupt store is never trusted. Mismatch and lock errors are not
    handled here: wiping would destroy another app's (or a running worker's) state.
    """
    try:
        return RocksDBPartitionStore.open(path, identity)
    except StoreCorruptError as exc:
        (logger or _log).warning(
            "%s Wiping it; the table partition is rebuilt from its changelog.", exc
        )
    RocksDBPartitionStore.destroy(path)
    return RocksDBPartitionStore.open(path, identity)


def read_identity(path: Path | str) -> StoreIdentity:
    """The identity recorded in the store at ``path`` (opens and closes it)."""
    path = Path(path)
    if not (path / "CURRENT").is_file():
        raise StoreCorruptError(f"Table store at {path} holds no RocksDB database.")
    db = _open_db(path)
    try:
        meta = db.get_column_family(_META_CF)
        try:
            raw = meta.get(_IDENTITY_KEY)
        finally:
            meta.close()
    finally:
        db.close()
    if raw is None:
        raise StoreCorruptError(f"Table store at {path} has no identity record.")
    return StoreIdentity.from_bytes(raw)
