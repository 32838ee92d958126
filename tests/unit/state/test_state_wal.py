"""A store that keeps being written keeps a bounded write-ahead log.

The changelog offset lives in a second column family that is written with every batch
and never fills its memtable; RocksDB keeps every log file until each column family
holding data in it is flushed, so without a bound on the total log size the log grows
with the stream (until RocksDB's default bound, four times all the write buffers: about
1 GB per partition store).
"""

from __future__ import annotations

from pathlib import Path

from eoflow._state.rocksdb import MAX_TOTAL_WAL_BYTES, RocksDBPartitionStore
from eoflow._state.store import StoreIdentity

IDENTITY = StoreIdentity(app_id="app", table="windows", partition=0, partition_count=1)


def _log_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.log"))


def test_the_write_ahead_log_stays_bounded_on_an_endless_stream(tmp_path: Path) -> None:
    store = RocksDBPartitionStore.open(tmp_path / "p0", IDENTITY)
    value = b"v" * 10_000
    try:
        for step in range(350):  # 1 MB per commit, 350 MB in all, over 100 keys
            store.apply({f"k{i}".encode(): value for i in range(100)}, step)
        assert _log_bytes(tmp_path / "p0") < 3 * MAX_TOTAL_WAL_BYTES
    finally:
        store.close()
