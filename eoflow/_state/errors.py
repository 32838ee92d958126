"""Errors of the table-state layer.

The state errors live in :mod:`eoflow.errors` (the one public error hierarchy); this module
re-exports them for the code under ``eoflow._state`` and adds the few that only the state
layer raises::

    StateError                        (eoflow.errors)
    ├── StoreMismatchError            fatal: the store belongs to another app/partitioning
    ├── StoreCorruptError             retriable: the store is rebuilt from its changelog
    ├── StoreLockedError              fatal: another process has the store open
    ├── OffsetRegressionError         fatal: an apply would move the stored offset backwards
    └── RestoreError                  retriable: reading the changelog failed
"""

from __future__ import annotations

from eoflow.errors import RestoreError, StateError, StoreCorruptError, StoreMismatchError

__all__ = [
    "OffsetRegressionError",
    "RestoreError",
    "StateError",
    "StoreCorruptError",
    "StoreLockedError",
    "StoreMismatchError",
]


class StoreLockedError(StateError):
    """Another process (often a second worker on the same data directory) holds the store.

    The store is healthy, so it must not be wiped; stop the other process or give this
    worker its own data directory.
    """


class OffsetRegressionError(StateError):
    """An apply carried a changelog offset not above the stored one.

    The stored changelog offset only grows (invariant 4); a regression means the caller
    would apply the same or older changelog records twice. This is a bug, not a fault.
    """
