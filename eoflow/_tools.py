"""Operator helpers behind ``eoflow send`` and ``eoflow table``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eoflow._app import App
from eoflow._settings import parse_broker
from eoflow._state import RocksDBPartitionStore, store_path
from eoflow._state.rocksdb import read_identity
from eoflow._transport.kit import read_changelog, send_one
from eoflow.errors import EoflowError, StateError

__all__ = ["read_changelog", "read_table", "send_one"]


def read_table(app: App, table: Any, *, datadir: str | None, from_changelog: bool,
               broker: str | None) -> dict[bytes, bytes]:
    """Committed contents of ``table``: its local stores, or its changelog."""
    settings = app.settings
    if from_changelog:
        bootstrap = parse_broker(broker or settings.broker)
        try:
            return asyncio.run(read_changelog(bootstrap, settings.changelog_topic(table.name),
                                              client_options=settings.client_options))
        except EoflowError as exc:
            raise EoflowError(f"changelog of table {table.name!r}: {exc}") from exc
    root = Path(datadir) if datadir else settings.datadir
    table_dir = store_path(root, table.name, 0).parent
    if not table_dir.is_dir():
        raise EoflowError(f"no local store for table {table.name!r} under {root}; "
                          "pass --datadir or use --from-changelog")
    contents: dict[bytes, bytes] = {}
    for part_dir in sorted(table_dir.iterdir(), key=lambda p: int(p.name)):
        partition = int(part_dir.name)
        store = _open_any(part_dir, settings.app_id, table.name, partition)
        try:
            contents.update(store.items())
        finally:
            store.close()
    return contents


def _open_any(path: Path, app_id: str, table: str, partition: int) -> RocksDBPartitionStore:
    try:
        identity = read_identity(path)
        if (identity.app_id, identity.table, identity.partition) != (app_id, table, partition):
            raise EoflowError(f"store {path} belongs to {identity.describe()}")
        return RocksDBPartitionStore.open(path, identity)
    except StateError as exc:
        raise EoflowError(f"{exc} (use --from-changelog while a worker runs)") from exc
