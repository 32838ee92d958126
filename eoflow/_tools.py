"""Operator helpers behind ``eoflow send`` and ``eoflow table``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from eoflow._app import App
from eoflow._settings import parse_broker
from eoflow._state import RocksDBPartitionStore, store_path
from eoflow._state.rocksdb import read_identity
from eoflow.errors import EoflowError, StateError, TransportError

__all__ = ["read_changelog", "read_table", "send_one"]


async def send_one(broker: str, topic: str, key: bytes | None,
                   value: bytes | None) -> tuple[int, int]:
    """Produce one record (idempotent, acks=all); returns ``(partition, offset)``."""
    producer = AIOKafkaProducer(bootstrap_servers=parse_broker(broker), enable_idempotence=True)
    try:
        await producer.start()
        meta = await producer.send_and_wait(topic, value=value, key=key)
    except Exception as exc:
        raise TransportError(f"sending to {topic!r}: {exc!r}") from exc
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def read_changelog(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """Fold a changelog topic, committed records only, from the start to its end (LSO)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        try:
            partitions = await consumer._client._wait_on_metadata(topic)
        except Exception:
            partitions = None
        if not partitions:
            raise EoflowError(f"changelog topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        contents: dict[bytes, bytes] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        contents.pop(record.key, None)
                    else:
                        contents[record.key] = record.value
        return contents
    finally:
        await consumer.stop()


def read_table(app: App, table: Any, *, datadir: str | None, from_changelog: bool,
               broker: str | None) -> dict[bytes, bytes]:
    """Committed contents of ``table``: its local stores, or its changelog."""
    settings = app.settings
    if from_changelog:
        bootstrap = parse_broker(broker or settings.broker)
        return asyncio.run(read_changelog(bootstrap, settings.changelog_topic(table.name)))
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
