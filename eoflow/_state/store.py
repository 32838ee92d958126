"""Local stores for table partitions: the Protocol and its RocksDB and in-memory forms.

This module is the one import for callers; the parts live in :mod:`~eoflow._state.base`
(identity, Protocol, offset rule), :mod:`~eoflow._state.rocksdb` and
:mod:`~eoflow._state.memory`.
"""

from __future__ import annotations

from eoflow._state.base import FORMAT_VERSION, PartitionStore, StoreIdentity, store_path
from eoflow._state.memory import MemoryPartitionStore
from eoflow._state.rocksdb import RocksDBPartitionStore, open_or_rebuild

__all__ = [
    "FORMAT_VERSION",
    "MemoryPartitionStore",
    "PartitionStore",
    "RocksDBPartitionStore",
    "StoreIdentity",
    "open_or_rebuild",
    "store_path",
]
