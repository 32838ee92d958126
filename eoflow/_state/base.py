"""What every table-partition store is: its identity, its Protocol, the offset rule.

A store holds the committed state of one table partition and the offset of the last
changelog record that state includes. The only write is :meth:`PartitionStore.apply`, which
writes a transaction's table writes *and* the new changelog offset in one atomic step
(invariant 4): after a crash the store holds either the old state with the old offset or
the new state with the new offset, never a mix, so restore can resume from the offset.

Each store also records its :class:`StoreIdentity`. Opening a store written for another
app, table, partition or partition count raises :class:`StoreMismatchError` instead of
silently serving another partitioning's state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from eoflow._state.errors import OffsetRegressionError

__all__ = [
    "FORMAT_VERSION",
    "PartitionStore",
    "StoreIdentity",
    "check_offset_advances",
    "store_path",
]

#: Version of the on-disk layout; a store written with another version is not opened.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoreIdentity:
    """What a store belongs to; written when the store is created, checked on every open."""

    app_id: str
    table: str
    partition: int
    partition_count: int
    format_version: int = FORMAT_VERSION

    def describe(self) -> str:
        """Human-readable form for error messages."""
        return (
            f"app {self.app_id!r}, table {self.table!r}, partition {self.partition} "
            f"of {self.partition_count}, format version {self.format_version}"
        )

    def to_bytes(self) -> bytes:
        """Serialize as JSON (stable, readable with ``ldb`` if ever needed)."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoreIdentity:
        """Parse :meth:`to_bytes` output; raises ``ValueError`` on anything else."""
        data: Any = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("identity is not a JSON object")
        return cls(
            app_id=str(data["app_id"]),
            table=str(data["table"]),
            partition=int(data["partition"]),
            partition_count=int(data["partition_count"]),
            format_version=int(data["format_version"]),
        )


class PartitionStore(Protocol):
    """Committed state of one table partition plus its changelog offset.

    ``items()`` yields in ascending key order. ``apply``, ``reset`` and ``close`` may be
    called from a worker thread (the runtime uses ``asyncio.to_thread``).
    """

    @property
    def identity(self) -> StoreIdentity:
        """Which app, table and partition this store belongs to."""
        ...

    @property
    def changelog_offset(self) -> int | None:
        """Offset of the last changelog record applied; None when nothing was applied."""
        ...

    @property
    def owned_at(self) -> float | None:
        """Wall-clock time (``time.time()``) this store was last known current: its last
        apply or :meth:`touch`. None for a store that never had either."""
        ...

    def touch(self) -> None:
        """Record that the store is current now (its owner restored or releases it)."""
        ...

    def get(self, key: bytes) -> bytes | None:
        """The committed value of ``key``, or None."""
        ...

    def items(self, start: bytes | None = None,
              stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Committed key/value pairs in ascending key order, ``start <= key < stop``."""
        ...

    def estimate_keys(self) -> int:
        """About how many keys the store holds (cheap; for metrics)."""
        ...

    def apply(self, writes: Mapping[bytes, bytes | None], changelog_offset: int) -> None:
        """Atomically write ``writes`` (None deletes), the new changelog offset and the
        time (:attr:`owned_at`).

        Raises :class:`OffsetRegressionError` unless ``changelog_offset`` is above the
        stored one.
        """
        ...

    def reset(self) -> None:
        """Drop all data and the offset (keeping the identity): the store is stale."""
        ...

    def close(self) -> None:
        """Release the store; idempotent."""
        ...


def store_path(datadir: Path | str, table: str, partition: int) -> Path:
    """Directory of a table partition's RocksDB store under the worker's data directory."""
    return Path(datadir) / "tables" / table / str(partition)


def check_offset_advances(current: int | None, new: int, where: str) -> None:
    """Enforce that the stored changelog offset only grows."""
    if new < 0:
        raise OffsetRegressionError(f"{where}: changelog offset {new} is negative")
    if current is not None and new <= current:
        raise OffsetRegressionError(
            f"{where}: refusing to apply changelog offset {new}, the store already holds "
            f"offset {current}; applying it would apply changelog records twice"
        )
