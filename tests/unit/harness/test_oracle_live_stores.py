"""The oracle's live-store check reads every table store the workers left behind, as the
runtime would open it on restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from eoflow._state import RocksDBPartitionStore, StoreIdentity, store_path
from eoflow._state.rocksdb import _open_db
from eoflow.errors import StoreCorruptError
from tests.harness.oracle import live_stores


def _interrupted(path: Path, data: dict[bytes, bytes]) -> None:
    """A store whose creation a kill -9 cut between creating the database and writing its
    identity record (with ``data``, one that was written to all the same)."""
    path.mkdir(parents=True)
    db = _open_db(path)  # what RocksDBPartitionStore.open does before the identity
    for key, value in data.items():
        db[key] = value
    db.close()


def test_a_store_whose_creation_was_interrupted_is_skipped_as_the_runtime_wipes_it(
        tmp_path: Path) -> None:
    """CI, stop 22: a worker killed while it created partition 3's store left a database
    with no identity record; the oracle crashed on it with StoreCorruptError. The runtime
    wipes such a store and rebuilds it from the changelog, so it holds nothing to check."""
    good = store_path(tmp_path / "w2", "aggs", 3)
    store = RocksDBPartitionStore.open(good, StoreIdentity("app", "aggs", 3, 4))
    store.apply({b"k": b"1"}, 41)
    store.close()
    _interrupted(store_path(tmp_path / "w1", "aggs", 3), {})
    assert live_stores([tmp_path / "w1", tmp_path / "w2"], [3]) == {3: (41, {b"k": b"1"})}


def test_a_store_with_data_but_no_identity_is_still_an_error(tmp_path: Path) -> None:
    """eoflow writes the identity before any data: data without it is corruption."""
    _interrupted(store_path(tmp_path / "w1", "aggs", 3), {b"k": b"1"})
    with pytest.raises(StoreCorruptError, match="no identity record"):
        live_stores([tmp_path / "w1"], [3])
