"""Table state: per-partition stores, transaction overlays and changelog restore.

Pure of runtime and app knowledge; the runtime composes these pieces. Imports only
``eoflow.errors``, rocksdict and aiokafka.
"""

from eoflow._state.faults import fault_point
from eoflow._state.overlay import Overlay
from eoflow._state.restore import RestoreStats, restore_partition
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
    "MemoryPartitionStore",
    "Overlay",
    "PartitionStore",
    "RestoreStats",
    "RocksDBPartitionStore",
    "StoreIdentity",
    "fault_point",
    "open_or_rebuild",
    "restore_partition",
    "store_path",
]
