"""Table state: per-partition stores, transaction overlays and changelog restore.

Pure of runtime and app knowledge; the runtime composes these pieces. Imports only
``eoflow.errors`` and rocksdict; restore reads through a ``ChangelogReader`` the transport
provides.
"""

from eoflow._state.overlay import Overlay
from eoflow._state.restore import ChangelogReader, RestoreStats, restore
from eoflow._state.store import (
    FORMAT_VERSION,
    MemoryPartitionStore,
    PartitionStore,
    RocksDBPartitionStore,
    StoreIdentity,
    open_or_rebuild,
    store_path,
)

__all__ = [
    "FORMAT_VERSION",
    "ChangelogReader",
    "MemoryPartitionStore",
    "Overlay",
    "PartitionStore",
    "RestoreStats",
    "RocksDBPartitionStore",
    "StoreIdentity",
    "open_or_rebuild",
    "restore",
    "store_path",
]
