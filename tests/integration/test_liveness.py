"""Ways a worker got stuck or went wrong without losing data (issue 17, items 5 to 9).

A long restore inside the assignment callback, slow events blamed on their neighbours,
tables used from topics of another partition count, stores that outlived their
changelog's tombstones.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import eoflow
from eoflow.errors import ConfigurationError, TableUsageError
from eoflow.testing import produce, read_committed, running, wait_for_records


def _app(bootstrap: str, tmp_path: Path, **kwargs: Any) -> eoflow.App:
    kwargs.setdefault("commit_interval", 0.1)
    kwargs.setdefault("session_timeout", 6.0)
    return eoflow.App(f"l-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                      datadir=tmp_path / "data", **kwargs)


def _ids(records: list[Any]) -> list[int]:
    return [json.loads(r.value)["id"] for r in records]


async def test_a_restore_longer_than_the_session_timeout_keeps_the_membership(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """17.5: aiokafka sends no heartbeat while the assignment callback runs; a restore in it
    that outlasts the session timeout expelled the member, which rejoined and restored
    again, forever. Restore runs beside the group protocol now."""
    from eoflow._runtime import tables

    real_restore = tables.restore
    slowed: list[int] = []

    async def slow_restore(*args: Any, **kwargs: Any) -> Any:
        slowed.append(1)
        await asyncio.sleep(5.0)  # longer than the 3 s session timeout
        return await real_restore(*args, **kwargs)

    monkeypatch.setattr(tables, "restore", slow_restore)
    app = _app(kafka_bootstrap, tmp_path, session_timeout=3.0)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)
    counts = app.Table("counts", default=int)

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            counts[key.decode()] += 1
            await out.send(value={"id": value["id"], "n": counts[key.decode()]})

    async with running(app, ready_timeout=60) as worker:
        await produce(kafka_bootstrap, src.name,
                      [(b"k", json.dumps({"id": i}).encode()) for i in range(5)])
        records = await wait_for_records(kafka_bootstrap, out.name, 5, timeout=40)
        assert worker.rebalance is not None
        assert worker.rebalance.rebalances == 1, "the member was expelled during the restore"
    assert slowed
    assert [json.loads(r.value)["n"] for r in records] == [1, 2, 3, 4, 5]


async def test_only_the_slow_event_is_blamed_not_the_one_beside_it(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """17.7: at the barrier's deadline each agent instance holds an event; only one that was
    held for long is slow. The neighbour taken a moment ago must not be counted (or, after
    max_retries such aborts, dead-lettered)."""
    app = _app(kafka_bootstrap, tmp_path, transaction_timeout=4.0, max_retries=2)
    src = app.topic(f"{app.id}-in", partitions=2)
    out = app.topic(f"{app.id}-out", partitions=2)

    @app.agent(src, concurrency=2)
    async def work(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await asyncio.sleep(600 if value.get("stuck") else 0.4)
            await out.send(value=value)

    async with running(app):
        await produce(kafka_bootstrap, src.name, [(None, b'{"id": 0, "stuck": true}')],
                      partition=0)
        await produce(kafka_bootstrap, src.name,
                      [(None, json.dumps({"id": i}).encode()) for i in range(1, 31)],
                      partition=1)
        dead = await wait_for_records(kafka_bootstrap, app.settings.dlq_topic, 1, timeout=60)
        records = await wait_for_records(kafka_bootstrap, out.name, 30, timeout=60)
        await asyncio.sleep(1.0)
        dead = await read_committed(kafka_bootstrap, app.settings.dlq_topic)
    assert [json.loads(d.value)["id"] for d in dead] == [0]
    assert sorted(_ids(records)) == list(range(1, 31))


async def test_a_table_with_a_partition_count_no_source_topic_has_is_refused_at_start(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=2)
    app.Table("counts", default=int, partitions=4)

    @app.agent(src)
    async def noop(stream: eoflow.Stream[bytes, Any]) -> None:
        async for _ in stream:
            pass

    with pytest.raises(ConfigurationError, match=r"'counts' has 4 partitions.*\[2\]"):
        async with running(app):
            pass


async def test_a_table_used_from_a_topic_of_another_partition_count_stops_the_worker(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """17.8: the range assignor gives each member the same *numbers* of equally partitioned
    topics only; a 4-partition table written from a 2-partition topic's events would put
    keys in partitions their records never reach (and two members would own them)."""
    app = _app(kafka_bootstrap, tmp_path)
    narrow = app.topic(f"{app.id}-narrow", partitions=2)
    wide = app.topic(f"{app.id}-wide", partitions=4)
    counts = app.Table("counts", default=int, partitions=4)

    @app.agent(wide)
    async def fine(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, _ in stream.items():
            counts[key.decode()] += 1

    @app.agent(narrow)
    async def wrong(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, _ in stream.items():
            counts[key.decode()] += 1

    with pytest.raises(TableUsageError, match=rf"'counts' has 4 partitions.*{narrow.name}"):
        async with running(app) as worker:
            await produce(kafka_bootstrap, wide.name, [(b"a", b"{}")])
            await wait_for_records(kafka_bootstrap, f"{app.id}-counts-changelog", 1)
            await produce(kafka_bootstrap, narrow.name, [(b"b", b"{}")])
            for _ in range(400):
                if worker.committer is not None and worker.committer.fatal is not None:
                    break
                await asyncio.sleep(0.05)
    changelog = await read_committed(kafka_bootstrap, f"{app.id}-counts-changelog")
    assert [r.key for r in changelog] == [b'"a"']


async def test_a_store_unowned_longer_than_the_tombstone_retention_is_rebuilt(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """17.9: while a partition is away, its new owner may delete a key; once compaction has
    dropped that tombstone (delete.retention.ms), an old local store would bring the key
    back on restore. A store older than that retention is rebuilt from the changelog."""
    import time

    from eoflow._state import RocksDBPartitionStore, StoreIdentity, store_path

    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=1)
    counts = app.Table("counts", default=int)

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, _ in stream.items():
            counts[key.decode()] += 1

    async with running(app):
        await produce(kafka_bootstrap, src.name, [(b"a", b"{}"), (b"b", b"{}")])
        await wait_for_records(kafka_bootstrap, f"{app.id}-counts-changelog", 2)
        await asyncio.sleep(0.5)
    # The store as a worker left it two days ago, holding a key ("gone") whose tombstone
    # the changelog no longer has.
    path = store_path(app.settings.datadir, "counts", 0)
    store = RocksDBPartitionStore.open(path, StoreIdentity(app.id, "counts", 0, 1))
    two_days_ago = time.time() - 2 * 86400
    monkeypatch.setattr("eoflow._state.rocksdb.time.time", lambda: two_days_ago)
    assert store.changelog_offset is not None
    store.apply({b'"gone"': b"1"}, store.changelog_offset + 1)
    store.close()
    monkeypatch.undo()

    async with running(app):
        await produce(kafka_bootstrap, src.name, [(b"a", b"{}")])
        await wait_for_records(kafka_bootstrap, f"{app.id}-counts-changelog", 3)
        await asyncio.sleep(0.5)
    from eoflow._tools import read_table

    stored = read_table(app, counts, datadir=None, from_changelog=False, broker=None)
    assert stored == {b'"a"': b"2", b'"b"': b"1"}
