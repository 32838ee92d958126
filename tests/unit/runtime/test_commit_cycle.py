"""The commit cycle on the in-memory transport: the worker's own code, no broker, seconds.

Commit, abort, fencing by a newer instance, a rebalance in the middle of an interval, a
zombie whose generation moved on, a failed store apply. Each test runs a real ``Worker``
over ``MemoryTransport`` and reads the outputs as a ``read_committed`` consumer would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import eoflow
from eoflow._runtime.lifecycle import WorkerState
from eoflow._transport.memory import MemoryBroker, MemoryTransport
from eoflow.errors import ProducerFencedError
from eoflow.testing import running


def committed(broker: MemoryBroker, topic: str) -> list[Any]:
    return [r for log in broker.logs.get(topic, []) for r in log.read(0, 1 << 30)[0]]


def values(broker: MemoryBroker, topic: str) -> list[Any]:
    return [json.loads(r.value) for r in committed(broker, topic)]


def produce(broker: MemoryBroker, topic: str, items: list[tuple[bytes | None, Any]],
            partition: int | None = None) -> None:
    from eoflow._transport.batching import default_partition

    for key, value in items:
        count = broker.partitions(topic)
        p = partition if partition is not None else (
            default_partition(key, count) if key is not None else 0)
        broker.append(None, 0, topic, p, [(key, json.dumps(value).encode(), None, ())])


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def make_app(tmp_path: Path, **kwargs: Any) -> eoflow.App:
    return eoflow.App(f"m-{uuid.uuid4().hex[:6]}", datadir=tmp_path / "data",
                      commit_interval=0.05, **kwargs)


def counting_app(tmp_path: Path, partitions: int = 2, **kwargs: Any) -> tuple[eoflow.App, Any]:
    app = make_app(tmp_path, **kwargs)
    src = app.topic("in", partitions=partitions)
    out = app.topic("out", partitions=partitions)
    counts = app.Table("counts", default=int)

    @app.agent(src, name="count")
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            counts[key.decode()] += 1
            await out.send(key=key, value={"id": value["id"], "n": counts[key.decode()]})

    return app, counts


def setup(broker: MemoryBroker, partitions: int = 2) -> None:
    broker.create_topic("in", partitions)
    broker.create_topic("out", partitions)


async def test_outputs_become_visible_only_when_their_interval_commits(tmp_path: Path) -> None:
    broker = MemoryBroker()
    setup(broker)
    app = make_app(tmp_path)
    src, out = app.topic("in", partitions=2), app.topic("out", partitions=2)
    sent, release = asyncio.Event(), asyncio.Event()

    @app.agent(src, name="hold")
    async def hold(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value)
            sent.set()
            await release.wait()

    async with running(app, transport=MemoryTransport(broker)):
        produce(broker, "in", [(None, {"id": 1})])
        await asyncio.wait_for(sent.wait(), 5)
        await asyncio.sleep(0.2)
        assert committed(broker, "out") == []  # in the transaction, not committed
        release.set()
        await until(lambda: committed(broker, "out"), "the commit")
    assert values(broker, "out") == [{"id": 1}]
    assert broker.committed(app.id, [("in", 0)])[0] == {("in", 0): 1}


async def test_an_aborted_interval_leaves_nothing_and_is_processed_again(tmp_path: Path) -> None:
    broker = MemoryBroker()
    setup(broker)
    app, counts = counting_app(tmp_path, max_retries=5)
    failed: set[int] = set()
    real = app.agents["count"].fun

    async def flaky(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            counts[key.decode()] += 1
            await app.topics["out"].send(key=key, value={"id": value["id"],
                                                          "n": counts[key.decode()]})
            if value["id"] % 5 == 3 and value["id"] not in failed:
                failed.add(value["id"])
                raise RuntimeError("first try fails")

    app.agents["count"] = type(app.agents["count"])("count", flaky, app.agents["count"].topics, 1)
    assert real is not flaky
    async with running(app, transport=MemoryTransport(broker)) as worker:
        produce(broker, "in", [(f"k{i % 3}".encode(), {"id": i}) for i in range(30)])
        await until(lambda: len(committed(broker, "out")) >= 30, "30 outputs")
        assert worker.committer is not None and worker.committer.aborts >= len(failed)
    outputs = values(broker, "out")
    assert sorted(o["id"] for o in outputs) == list(range(30))
    for k in range(3):  # the count of each key went up by one per input, never twice
        ns = [o["n"] for o in outputs if o["id"] % 3 == k]
        assert sorted(ns) == list(range(1, 11))


async def test_a_new_instance_with_the_same_id_fences_the_old_one(tmp_path: Path) -> None:
    broker = MemoryBroker()
    setup(broker)
    app, _ = counting_app(tmp_path, instance_id="same")
    twin, _ = counting_app(tmp_path / "twin", instance_id="same")
    # The same app and instance id (so the same transactional id and static member),
    # another data directory: a second process started with the first one's id.
    twin.settings = app.settings.with_overrides(datadir=tmp_path / "twin" / "data")
    with pytest.raises(ProducerFencedError, match="instance id"):
        async with running(app, transport=MemoryTransport(broker)) as first:
            produce(broker, "in", [(b"a", {"id": 0})])
            await until(lambda: committed(broker, "out"), "the first output")
            async with running(twin, transport=MemoryTransport(broker)):
                produce(broker, "in", [(b"a", {"id": 1})])
                await until(lambda: first.state.is_(WorkerState.FAILED), "the old one to stop")
    assert sorted(v["id"] for v in values(broker, "out")) == [0, 1]


async def test_a_member_joining_mid_interval_gets_every_record_exactly_once(
        tmp_path: Path) -> None:
    """The revoke runs the barrier and commits before partitions move."""
    broker = MemoryBroker()
    setup(broker, partitions=4)
    first, _ = counting_app(tmp_path / "1", partitions=4)
    second, _ = counting_app(tmp_path / "2", partitions=4)
    second.settings = first.settings.with_overrides(datadir=tmp_path / "2" / "data")
    async with running(first, transport=MemoryTransport(broker)):
        produce(broker, "in", [(f"k{i % 8}".encode(), {"id": i}) for i in range(100)])
        await until(lambda: len(committed(broker, "out")) > 10, "some outputs")
        async with running(second, transport=MemoryTransport(broker)):
            produce(broker, "in", [(f"k{i % 8}".encode(), {"id": i}) for i in range(100, 200)])
            await until(lambda: len(committed(broker, "out")) >= 200, "200 outputs")
    outputs = values(broker, "out")
    assert sorted(o["id"] for o in outputs) == list(range(200))
    for k in range(8):
        assert sorted(o["n"] for o in outputs if o["id"] % 8 == k) == list(range(1, 26))


async def test_a_zombie_whose_generation_moved_on_cannot_commit(tmp_path: Path) -> None:
    """The member's session expired while it held an open interval: its TxnOffsetCommit
    carries a stale generation, the coordinator refuses it, nothing it wrote is visible."""
    broker = MemoryBroker()
    setup(broker)
    app = make_app(tmp_path)
    src, out = app.topic("in", partitions=2), app.topic("out", partitions=2)
    holding, release = asyncio.Event(), asyncio.Event()

    @app.agent(src, name="hold")
    async def hold(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value)
            if value["id"] == 1:
                holding.set()
                await release.wait()

    async with running(app, transport=MemoryTransport(broker)) as worker:
        produce(broker, "in", [(None, {"id": 1})], partition=0)
        await asyncio.wait_for(holding.wait(), 5)
        assert worker.committer is not None and worker.committer.group is not None
        # Paused past its session: the group forgets the member without telling it.
        await broker.expire(app.id, worker.committer.group.member_id)
        release.set()
        await until(lambda: worker.committer is not None and worker.committer.aborts, "an abort")
        assert committed(broker, "out") == []
        await until(lambda: committed(broker, "out"), "the retry after rejoining")
    assert values(broker, "out") == [{"id": 1}]


async def test_a_failed_store_write_after_commit_catches_the_table_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eoflow._state.overlay import Overlay

    real = Overlay.write_to_store
    failures: list[int] = []

    def flaky(self: Overlay) -> None:
        if not failures and not self.is_empty:
            failures.append(1)
            raise OSError("disk full (injected)")
        real(self)

    monkeypatch.setattr(Overlay, "write_to_store", flaky)
    broker = MemoryBroker()
    setup(broker)
    app, _counts = counting_app(tmp_path)
    async with running(app, transport=MemoryTransport(broker)):
        for i in range(20):
            produce(broker, "in", [(b"k", {"id": i})])
            await asyncio.sleep(0.01)
        await until(lambda: len(committed(broker, "out")) >= 20, "20 outputs")
    assert failures
    assert [v["n"] for v in values(broker, "out")] == list(range(1, 21))
