"""PartitionStore behaviour, the same for the RocksDB and the in-memory store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from eoflow._state.errors import (
    OffsetRegressionError,
    StateError,
    StoreCorruptError,
    StoreLockedError,
    StoreMismatchError,
)
from eoflow._state.store import (
    MemoryPartitionStore,
    PartitionStore,
    RocksDBPartitionStore,
    StoreIdentity,
    open_or_rebuild,
    store_path,
)

IDENTITY = StoreIdentity(app_id="app", table="counts", partition=3, partition_count=8)


@pytest.fixture(params=["rocksdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PartitionStore]:
    s: PartitionStore
    if request.param == "rocksdb":
        s = RocksDBPartitionStore.open(store_path(tmp_path, "counts", 3), IDENTITY)
    else:
        s = MemoryPartitionStore(IDENTITY)
    yield s
    s.close()


def test_new_store_is_empty_with_no_offset(store: PartitionStore) -> None:
    assert store.changelog_offset is None
    assert list(store.items()) == []
    assert store.get(b"k") is None
    assert store.identity == IDENTITY


def test_apply_writes_deletes_and_offset_together(store: PartitionStore) -> None:
    store.apply({b"b": b"2", b"a": b"1", b"c": b"3"}, 10)
    store.apply({b"c": None, b"a": b"one", b"missing": None}, 12)
    assert store.changelog_offset == 12
    assert list(store.items()) == [(b"a", b"one"), (b"b", b"2")]
    assert store.get(b"c") is None


def test_empty_apply_advances_offset(store: PartitionStore) -> None:
    store.apply({}, 0)
    assert store.changelog_offset == 0


@pytest.mark.parametrize("offset", [5, 4, -1])
def test_offset_only_grows_and_rejected_apply_changes_nothing(
    store: PartitionStore, offset: int
) -> None:
    store.apply({b"a": b"1"}, 5)
    with pytest.raises(OffsetRegressionError, match="offset"):
        store.apply({b"a": b"2", b"b": b"2"}, offset)
    assert store.changelog_offset == 5
    assert list(store.items()) == [(b"a", b"1")]


def test_reset_drops_data_and_offset(store: PartitionStore) -> None:
    store.apply({b"a": b"1"}, 5)
    store.reset()
    assert store.changelog_offset is None
    assert list(store.items()) == []
    store.apply({b"b": b"1"}, 0)
    assert list(store.items()) == [(b"b", b"1")]


def test_close_is_idempotent_and_use_after_close_raises(store: PartitionStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StateError, match="closed"):
        store.apply({b"a": b"1"}, 1)


def test_rocksdb_reopen_keeps_data_and_offset(tmp_path: Path) -> None:
    path = store_path(tmp_path, "counts", 3)
    first = RocksDBPartitionStore.open(path, IDENTITY)
    first.apply({b"a": b"1", b"b": b"2"}, 41)
    first.apply({b"b": None}, 42)
    first.close()
    again = RocksDBPartitionStore.open(path, IDENTITY)
    try:
        assert again.changelog_offset == 42
        assert list(again.items()) == [(b"a", b"1")]
        assert len(again) == 1
    finally:
        again.close()


@pytest.mark.parametrize(
    "other",
    [
        StoreIdentity("other-app", "counts", 3, 8),
        StoreIdentity("app", "counts", 3, 16),
        StoreIdentity("app", "counts", 4, 8),
        StoreIdentity("app", "counts", 3, 8, format_version=99),
    ],
)
def test_identity_mismatch_names_path_expected_found_and_fix(
    tmp_path: Path, other: StoreIdentity
) -> None:
    path = store_path(tmp_path, "counts", 3)
    RocksDBPartitionStore.open(path, IDENTITY).close()
    with pytest.raises(StoreMismatchError) as caught:
        RocksDBPartitionStore.open(path, other)
    message = str(caught.value)
    assert str(path) in message
    assert other.describe() in message  # expected
    assert IDENTITY.describe() in message  # found
    assert "delete" in message
    # a mismatch is never "repaired" by wiping someone else's state
    with pytest.raises(StoreMismatchError):
        open_or_rebuild(path, other)
    reopened = RocksDBPartitionStore.open(path, IDENTITY)
    reopened.close()


def _fill_and_close(path: Path) -> None:
    s = RocksDBPartitionStore.open(path, IDENTITY)
    s.apply({b"a": b"1"}, 7)
    s.close()


def _garble_rocksdb_files(path: Path) -> None:
    for f in path.iterdir():
        if f.name.startswith(("MANIFEST", "CURRENT")) or f.suffix == ".sst":
            f.write_bytes(b"\x00garbage\xff" * 64)


def _garbage_dir(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("not a database")


def test_corrupt_rocksdb_files_raise_store_corrupt(tmp_path: Path) -> None:
    path = store_path(tmp_path, "counts", 3)
    _fill_and_close(path)
    _garble_rocksdb_files(path)
    with pytest.raises(StoreCorruptError, match=str(path)):
        RocksDBPartitionStore.open(path, IDENTITY)


@pytest.mark.parametrize("damage", ["rocksdb_files", "garbage_dir"])
def test_open_or_rebuild_wipes_corrupt_store_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    path = store_path(tmp_path, "counts", 3)
    if damage == "rocksdb_files":
        _fill_and_close(path)
        _garble_rocksdb_files(path)
    else:
        _garbage_dir(path)
    with caplog.at_level(logging.WARNING):
        fresh = open_or_rebuild(path, IDENTITY)
    try:
        assert fresh.changelog_offset is None
        assert list(fresh.items()) == []
        assert any("Wiping" in r.message and str(path) in r.message for r in caplog.records)
        assert not (path / "notes.txt").exists()
    finally:
        fresh.close()


def test_open_or_rebuild_keeps_a_healthy_store(tmp_path: Path) -> None:
    path = store_path(tmp_path, "counts", 3)
    _fill_and_close(path)
    s = open_or_rebuild(path, IDENTITY)
    try:
        assert s.changelog_offset == 7
        assert s.get(b"a") == b"1"
    finally:
        s.close()


def test_second_open_of_a_store_in_use_is_locked_not_corrupt(tmp_path: Path) -> None:
    path = store_path(tmp_path, "counts", 3)
    first = RocksDBPartitionStore.open(path, IDENTITY)
    try:
        with pytest.raises(StoreLockedError, match="another process"):
            open_or_rebuild(path, IDENTITY)
        assert first.get(b"a") is None  # still usable, not wiped
    finally:
        first.close()


def test_destroy_removes_the_directory(tmp_path: Path) -> None:
    path = store_path(tmp_path, "counts", 3)
    _fill_and_close(path)
    RocksDBPartitionStore.destroy(path)
    assert not path.exists()
    RocksDBPartitionStore.destroy(path)  # missing is fine
