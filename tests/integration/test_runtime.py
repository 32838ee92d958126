"""The commit cycle against the real broker, with the worker running in-process."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import eoflow
from eoflow.testing import create_topics, produce, read_committed, running, wait_for_records


def _app(bootstrap: str, tmp_path: Path, **kwargs: Any) -> eoflow.App:
    kwargs.setdefault("commit_interval", 0.1)
    return eoflow.App(f"t-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                      datadir=tmp_path / "data", session_timeout=6.0, **kwargs)


def _ids(records: list[Any]) -> list[int]:
    return [json.loads(r.value)["id"] for r in records]


async def test_outputs_are_invisible_until_the_transaction_commits(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)
    sent, release = asyncio.Event(), asyncio.Event()

    @app.agent(src)
    async def hold(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value)
            sent.set()
            await release.wait()  # the barrier cannot pass while we hold the event

    async with running(app):
        await produce(kafka_bootstrap, src.name, [(None, b'{"id": 1}')])
        await asyncio.wait_for(sent.wait(), 30)
        # The send returned, the transaction is open and cannot commit while the agent
        # holds its event: a read_committed reader sees nothing, now or a while later.
        assert await read_committed(kafka_bootstrap, out.name) == []
        await asyncio.sleep(1.0)
        assert await read_committed(kafka_bootstrap, out.name) == []
        release.set()
        committed = await wait_for_records(kafka_bootstrap, out.name, 1)
    assert _ids(committed) == [1]


async def test_agent_failure_aborts_the_interval_and_each_input_is_output_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path, commit_interval=0.5)
    src = app.topic(f"{app.id}-in", partitions=2)
    out = app.topic(f"{app.id}-out", partitions=2)
    seen = app.Table("seen", default=int)
    failed_once: set[int] = set()

    @app.agent(src)
    async def flaky(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            seen[key.decode()] += 1
            await out.send(key=key, value=value)
            if value["id"] % 25 == 7 and value["id"] not in failed_once:
                failed_once.add(value["id"])
                raise RuntimeError(f"first try of {value['id']} fails")

    inputs = [(f"k{i % 10}".encode(), json.dumps({"id": i}).encode()) for i in range(200)]
    async with running(app) as worker:
        await produce(kafka_bootstrap, src.name, inputs)
        records = await wait_for_records(kafka_bootstrap, out.name, 200)
        await asyncio.sleep(0.5)
        records = await read_committed(kafka_bootstrap, out.name)
        assert worker.committer is not None and worker.committer.aborts >= len(failed_once)
    assert sorted(_ids(records)) == list(range(200))
    changelog = await read_committed(kafka_bootstrap, f"{app.id}-seen-changelog")
    final = {r.key: int(r.value) for r in changelog if r.value is not None}
    assert final == {json.dumps(f"k{k}").encode(): 20 for k in range(10)}


async def test_poison_records_go_to_the_dead_letter_topic(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    # queue_size=1: the dispatcher blocks on a full queue when the agent dies, and the
    # abort must still happen (this deadlocked once).
    app = _app(kafka_bootstrap, tmp_path, max_retries=2, queue_size=1)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)

    @app.agent(src)
    async def strict(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            if value.get("boom"):
                raise ValueError("this record always fails")
            await out.send(value=value)

    inputs = [(None, json.dumps({"id": i}).encode()) for i in range(50)]
    inputs.insert(3, (b"bad", b"{not json"))
    inputs.insert(7, (b"boom", json.dumps({"id": 99, "boom": True}).encode()))
    async with running(app):
        await produce(kafka_bootstrap, src.name, inputs)
        records = await wait_for_records(kafka_bootstrap, out.name, 50)
        dead = await wait_for_records(kafka_bootstrap, app.settings.dlq_topic, 2)
    assert _ids(records) == list(range(50))
    assert [d.key for d in dead] == [b"bad", b"boom"]
    headers = [dict(d.headers) for d in dead]
    assert [h["eoflow.offset"] for h in headers] == [b"3", b"7"]
    assert all(h["eoflow.topic"] == src.name.encode() for h in headers)
    assert b"cannot decode value" in headers[0]["eoflow.error"]
    assert b"failed 2 times" in headers[1]["eoflow.error"]
    assert dead[0].value == b"{not json"


async def test_topic_with_another_partition_count_is_refused(
        kafka_bootstrap: str, tmp_path: Path, topic_factory: Any) -> None:
    existing = topic_factory(2)
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(existing, partitions=4)

    @app.agent(src)
    async def noop(stream: eoflow.Stream[bytes, Any]) -> None:
        async for _ in stream:
            pass

    with pytest.raises(eoflow.errors.TopicMismatchError, match="exists with 2 partitions"):
        async with running(app):
            pass


async def test_on_error_fail_stops_the_worker_naming_the_record(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    from eoflow._runtime.lifecycle import WorkerState

    app = _app(kafka_bootstrap, tmp_path, on_error="fail")
    src = app.topic(f"{app.id}-in", partitions=1)

    @app.agent(src)
    async def strict(stream: eoflow.Stream[bytes, Any]) -> None:
        async for _ in stream:
            pass

    with pytest.raises(eoflow.errors.EoflowError, match=rf"{src.name}\[0\]@1 .*cannot decode"):
        async with running(app) as worker:
            await produce(kafka_bootstrap, src.name, [(None, b"{}"), (b"k", b"not json")])
            for _ in range(200):
                if worker.state.is_(WorkerState.FAILED):
                    break
                await asyncio.sleep(0.05)
    out = await read_committed(kafka_bootstrap, app.settings.dlq_topic)
    assert out == [], "on_error='fail' must not dead-letter"


async def test_output_larger_than_the_broker_accepts_aborts_and_is_dead_lettered(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """The broker refuses the record (message.max.bytes): the transaction must abort, the
    event that produced it ends in the DLQ, and every other input is output exactly once."""
    app = _app(kafka_bootstrap, tmp_path, max_retries=2, commit_interval=0.3)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=2)

    @app.agent(src)
    async def inflate(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            if value["id"] == 13:
                value["blob"] = "x" * 1_200_000  # > the broker's default 1 MiB
            await out.send(key=str(value["id"]).encode(), value=value)

    inputs = [(None, json.dumps({"id": i}).encode()) for i in range(40)]
    async with running(app):
        await produce(kafka_bootstrap, src.name, inputs)
        dead = await wait_for_records(kafka_bootstrap, app.settings.dlq_topic, 1)
        records = await wait_for_records(kafka_bootstrap, out.name, 39)
    error = dict(dead[0].headers)["eoflow.error"]
    assert b"failed 2 times" in error and b"max.message.bytes" in error
    assert sorted(_ids(records)) == [i for i in range(40) if i != 13]
    assert [json.loads(d.value)["id"] for d in dead] == [13]
    assert dict(dead[0].headers)["eoflow.offset"] == b"13"


async def test_topic_limit_lowered_under_a_running_worker_blames_the_right_event(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """The worker's size limits are stale: the broker refuses whole batches. The retry
    sends each record alone, so only the really oversized event is dead-lettered."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    app = _app(kafka_bootstrap, tmp_path, max_retries=2, commit_interval=0.3)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)

    @app.agent(src)
    async def pad(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            value["pad"] = "x" * (30_000 if value["id"] == 21 else 900)
            await out.send(key=str(value["id"]).encode(), value=value)

    async with running(app):
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, out.name, {"max.message.bytes": "20000"})])
        finally:
            await admin.close()
        await asyncio.sleep(1.0)  # let the broker apply the new limit
        await produce(kafka_bootstrap, src.name,
                      [(None, json.dumps({"id": i}).encode()) for i in range(60)])
        dead = await wait_for_records(kafka_bootstrap, app.settings.dlq_topic, 1)
        records = await wait_for_records(kafka_bootstrap, out.name, 59)
    assert sorted(_ids(records)) == [i for i in range(60) if i != 21]
    assert [json.loads(d.value)["id"] for d in dead] == [21]


async def test_store_of_another_partitioning_stops_the_worker_instead_of_hanging(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """aiokafka swallows listener errors; the worker must still stop with the cause."""
    from eoflow._runtime.lifecycle import WorkerState
    from eoflow._state import RocksDBPartitionStore, StoreIdentity, store_path

    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=2)
    counts = app.Table("counts", default=int)

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, _ in stream.items():
            counts[key.decode()] += 1

    foreign = StoreIdentity(app.id, "counts", 0, 16)  # written by a 16-partition deployment
    RocksDBPartitionStore.open(store_path(app.settings.datadir, "counts", 0), foreign).close()
    with pytest.raises(eoflow.errors.StoreMismatchError, match="partition 0 of 16"):
        async with running(app) as worker:
            for _ in range(200):
                if worker.state.is_(WorkerState.FAILED):
                    break
                await asyncio.sleep(0.05)


async def test_agent_over_several_topics_with_concurrency_keeps_partition_order(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    first = app.topic(f"{app.id}-a", partitions=2)
    second = app.topic(f"{app.id}-b", partitions=2)
    out = app.topic(f"{app.id}-out", partitions=1)
    seen: dict[tuple[str, int], list[int]] = {}

    @app.agent([first, second], concurrency=2)
    async def merge(stream: eoflow.Stream[bytes, Any]) -> None:
        async for event in stream.events():
            seen.setdefault((event.topic, event.partition), []).append(event.offset)
            await asyncio.sleep(0)  # let the other instance interleave
            await out.send(value={"id": event.value["id"]})

    async with running(app):
        for topic, base in ((first, 0), (second, 1000)):
            for partition in (0, 1):
                await produce(kafka_bootstrap, topic.name,
                              [(None, json.dumps({"id": base + 100 * partition + i}).encode())
                               for i in range(30)], partition=partition)
        records = await wait_for_records(kafka_bootstrap, out.name, 120)
    assert sorted(_ids(records)) == sorted(b + 100 * p + i for b in (0, 1000)
                                           for p in (0, 1) for i in range(30))
    assert set(seen) == {(t.name, p) for t in (first, second) for p in (0, 1)}
    assert all(offsets == list(range(30)) for offsets in seen.values())


async def test_a_failed_store_write_after_commit_catches_the_table_up(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EndTxn succeeded, then writing RocksDB failed: the table must not lose the
    committed writes (it is caught up from its changelog before going on), even when
    the next interval aborts and throws its own overlay away."""
    from eoflow._state.overlay import Overlay

    real_write_to_store = Overlay.write_to_store
    failures = []

    def flaky_write_to_store(self: Overlay) -> None:
        if not failures and not self.is_empty:
            failures.append(1)
            raise OSError("disk full (injected)")
        real_write_to_store(self)

    monkeypatch.setattr(Overlay, "write_to_store", flaky_write_to_store)
    app = _app(kafka_bootstrap, tmp_path, commit_interval=0.2)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)
    counts = app.Table("counts", default=int)

    raised: list[int] = []

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            counts[key.decode()] += 1
            if value["id"] == 25 and not raised:
                raised.append(1)
                raise RuntimeError("abort the interval after the failed store write")
            await out.send(key=key, value={"id": value["id"], "count": counts[key.decode()]})

    async with running(app):
        await produce(kafka_bootstrap, src.name,
                      [(b"k", json.dumps({"id": i}).encode()) for i in range(20)])
        await asyncio.sleep(1.0)
        await produce(kafka_bootstrap, src.name,
                      [(b"k", json.dumps({"id": i}).encode()) for i in range(20, 40)])
        records = await wait_for_records(kafka_bootstrap, out.name, 40)
    assert failures, "the injected failure never happened"
    assert [json.loads(r.value)["count"] for r in records] == list(range(1, 41))


async def test_a_pattern_topic_consumes_the_matching_topics_of_the_cluster(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    await create_topics(kafka_bootstrap, {f"{app.id}-eu": 2, f"{app.id}-us": 2,
                                          f"{app.id}-other": 2})
    regions = app.topic(pattern=rf"{app.id}-(eu|us)")
    out = app.topic(f"{app.id}-out", partitions=2)

    @app.agent(regions)
    async def tag(stream: eoflow.Stream[bytes, Any]) -> None:
        async for event in stream.events():
            await out.send(value={"id": event.value["id"], "topic": event.topic})

    async with running(app):
        for i, region in enumerate(("eu", "us", "other")):
            await produce(kafka_bootstrap, f"{app.id}-{region}", [(None, b'{"id": %d}' % i)])
        committed = await wait_for_records(kafka_bootstrap, out.name, 2)
        await asyncio.sleep(1.0)  # nothing more arrives: -other is not matched
        committed = await read_committed(kafka_bootstrap, out.name)
    assert sorted((json.loads(r.value)["id"], json.loads(r.value)["topic"])
                  for r in committed) == [(0, f"{app.id}-eu"), (1, f"{app.id}-us")]
