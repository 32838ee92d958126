"""Errors of the table-state layer, re-exported from :mod:`eoflow.errors` (the one public
error hierarchy) for the code under ``eoflow._state``."""

from __future__ import annotations

from eoflow.errors import (
    OffsetRegressionError,
    RestoreError,
    StateError,
    StoreCorruptError,
    StoreLockedError,
    StoreMismatchError,
)

__all__ = [
    "OffsetRegressionError",
    "RestoreError",
    "StateError",
    "StoreCorruptError",
    "StoreLockedError",
    "StoreMismatchError",
]
