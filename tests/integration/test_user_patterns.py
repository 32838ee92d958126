"""Exactly-once under the patterns users write, against the real broker (issues 17, 18).

The harness drives one well-behaved app; these tests drive the code users actually write:
an agent that catches a send error, tasks spawned from an agent, table writes from
outside an event, a partition number out of range, a poison record too large for the
dead-letter topic, a commit that hangs, a coordinator that is not there yet.
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
from eoflow.errors import EoflowError, TableUsageError
from eoflow.testing import produce, read_committed, running, wait_for_records


def _app(bootstrap: str, tmp_path: Path, **kwargs: Any) -> eoflow.App:
    kwargs.setdefault("commit_interval", 0.1)
    return eoflow.App(f"u-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                      datadir=tmp_path / "data", session_timeout=6.0, **kwargs)


def _ids(records: list[Any]) -> list[int]:
    return [json.loads(r.value)["id"] for r in records]


def _inputs(n: int, start: int = 0, **extra: Any) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % 7}".encode(), json.dumps({"id": i, **extra}).encode())
            for i in range(start, start + n)]


async def _until(condition: Any, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- 17.2 / 17.6: a failed hand-off of an output batch ---------------------------------


@pytest.fixture
def failing_submits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the producer refuse the 3rd batch handed to it (a broker away too long)."""
    from eoflow._transport.producer import TransactionalProducer
    from eoflow.errors import TransactionAbortedError

    real = TransactionalProducer.submit_batch
    calls: list[int] = []

    async def submit_batch(self: Any, batch: Any, topic: str, partition: int) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise TransactionAbortedError(f"send batch to {topic}[{partition}]: "
                                          "KafkaTimeoutError (injected)")
        return await real(self, batch, topic, partition)

    monkeypatch.setattr(TransactionalProducer, "submit_batch", submit_batch)
    return calls


async def test_a_send_error_the_agent_catches_still_aborts_the_interval(
        kafka_bootstrap: str, tmp_path: Path, failing_submits: list[int]) -> None:
    """The failed batch held records of events processed before: if the interval
    committed, they would be lost. Catching the error must not make it commit."""
    app = _app(kafka_bootstrap, tmp_path, commit_interval=1.0)
    src = app.topic(f"{app.id}-in", partitions=1)
    # Small batches: a batch fills after ~15 records and is handed over by the agent's send.
    out = app.topic(f"{app.id}-out", partitions=1, config={"max.message.bytes": "20000"})

    @app.agent(src)
    async def best_effort(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            try:  # noqa: SIM105 -- the pattern users write
                await out.send(value={**value, "pad": "x" * 1000})
            except EoflowError:
                pass  # "best effort": a common pattern, must not cost exactly-once

    async with running(app):
        await produce(kafka_bootstrap, src.name, _inputs(100))
        records = await wait_for_records(kafka_bootstrap, out.name, 100, timeout=30)
        await asyncio.sleep(1.5)
        records = await read_committed(kafka_bootstrap, out.name)
    assert len(failing_submits) >= 3, "the injected failure never happened"
    assert sorted(_ids(records)) == list(range(100))


async def test_a_failed_background_hand_off_aborts_the_interval_not_the_worker(
        kafka_bootstrap: str, tmp_path: Path, failing_submits: list[int]) -> None:
    """Small outputs never fill a batch: they are handed over every 10 ms by the worker's
    loop, where a failure must abort the interval instead of crashing the worker."""
    app = _app(kafka_bootstrap, tmp_path, commit_interval=0.5)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)

    @app.agent(src)
    async def forward(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value)
            await asyncio.sleep(0.005)

    async with running(app) as worker:
        await produce(kafka_bootstrap, src.name, _inputs(60))
        records = await wait_for_records(kafka_bootstrap, out.name, 60, timeout=30)
        assert not worker.state.is_(WorkerState.FAILED)
        await asyncio.sleep(1.0)
        records = await read_committed(kafka_bootstrap, out.name)
    assert len(failing_submits) >= 3, "the injected failure never happened"
    assert sorted(_ids(records)) == list(range(60))


# -- 17.3: tasks spawned by an agent -----------------------------------------------------


async def test_sends_of_tasks_the_agent_awaits_commit_with_the_event(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=2)
    left = app.topic(f"{app.id}-left", partitions=2)
    right = app.topic(f"{app.id}-right", partitions=2)

    async def slow_send(topic: eoflow.Topic[Any, Any], value: Any) -> None:
        await asyncio.sleep(0.02)  # the barrier may be waiting meanwhile
        await topic.send(value=value)

    @app.agent(src)
    async def fan_out(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await asyncio.gather(slow_send(left, value), slow_send(right, value))

    async with running(app):
        await produce(kafka_bootstrap, src.name, _inputs(40))
        lefts = await wait_for_records(kafka_bootstrap, left.name, 40)
        rights = await wait_for_records(kafka_bootstrap, right.name, 40)
    assert sorted(_ids(lefts)) == sorted(_ids(rights)) == list(range(40))


async def test_a_send_from_a_task_that_outlives_its_event_is_refused_and_stops_the_worker(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """Fire-and-forget: the event counts as processed when the agent takes the next one,
    so its offset may commit before the task sends; that send cannot be exactly once."""
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)
    spawned: list[asyncio.Task[None]] = []

    @app.agent(src, name="fire_and_forget")
    async def fire_and_forget(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            spawned.append(asyncio.create_task(out.send(value=value)))

    with pytest.raises(EoflowError, match=r"fire_and_forget.*after.*@0"):
        async with running(app) as worker:
            await produce(kafka_bootstrap, src.name, _inputs(1))
            await _until(lambda: worker.state.is_(WorkerState.FAILED), 20, "the worker to stop")
    assert spawned and spawned[0].done()
    error = spawned[0].exception()
    assert isinstance(error, EoflowError) and "after" in str(error)
    assert await read_committed(kafka_bootstrap, out.name) == []


# -- 17.4: table writes outside an event -------------------------------------------------


async def test_a_table_write_outside_an_event_is_refused(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=1)
    counts = app.Table("counts", default=int)

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, _ in stream.items():
            counts[key.decode()] += 1

    async with running(app):
        await produce(kafka_bootstrap, src.name, _inputs(7))
        await wait_for_records(kafka_bootstrap, f"{app.id}-counts-changelog", 7)
        view = counts.partition(0)
        assert view["k3"] == 1  # reads of a named partition stay allowed
        with pytest.raises(TableUsageError, match="outside an event"):
            view["ghost"] = 1
        with pytest.raises(TableUsageError, match="outside an event"):
            del view["k3"]


async def test_the_store_never_holds_a_write_its_changelog_lacks(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10.3 / 17.4: a write through ``table.partition(n)`` from outside an event that
    lands between the changelog flush and the store apply used to reach RocksDB with no
    changelog record (the overlay had no prepared state). Whatever the timing, the store
    must equal the fold of its changelog."""
    from eoflow._state.overlay import Overlay
    from eoflow.testing import read_changelog

    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=1)
    counts = app.Table("counts", default=int)
    attempts: list[BaseException | None] = []
    real_note = Overlay.note_changelog_offset

    def note_then_write(self: Overlay, offset: int) -> None:
        real_note(self, offset)  # the changelog is flushed; the store apply comes next
        if not attempts:
            try:
                counts.partition(0)["ghost"] = 1
                attempts.append(None)
            except TableUsageError as exc:
                attempts.append(exc)

    monkeypatch.setattr(Overlay, "note_changelog_offset", note_then_write)

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, _ in stream.items():
            counts[key.decode()] += 1

    async with running(app):
        await produce(kafka_bootstrap, src.name, _inputs(7))
        await wait_for_records(kafka_bootstrap, f"{app.id}-counts-changelog", 7)
        await asyncio.sleep(0.5)
    assert attempts, "the write between flush and apply never happened"
    changelog = await read_changelog(kafka_bootstrap, f"{app.id}-counts-changelog")
    from eoflow._tools import read_table

    stored = await asyncio.to_thread(read_table, app, counts, datadir=None,
                                     from_changelog=False, broker=None)
    assert stored == changelog
    assert isinstance(attempts[0], TableUsageError)


# -- 17.6: records that cannot go where they are sent --------------------------------------


async def test_a_send_to_a_partition_out_of_range_fails_the_event_not_the_worker(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path, max_retries=2)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=2)

    @app.agent(src)
    async def route(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value, partition=5 if value["id"] == 3 else 1)

    async with running(app):
        await produce(kafka_bootstrap, src.name, _inputs(10))
        dead = await wait_for_records(kafka_bootstrap, app.settings.dlq_topic, 1, timeout=30)
        records = await wait_for_records(kafka_bootstrap, out.name, 9)
    assert sorted(_ids(records)) == [i for i in range(10) if i != 3]
    assert [json.loads(d.value)["id"] for d in dead] == [3]
    error = dict(dead[0].headers)["eoflow.error"].decode()
    assert "partition 5" in error and "2 partitions" in error and out.name in error


async def test_a_poison_record_too_large_for_the_dead_letter_topic_is_truncated(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """The input topic accepts 3 MB; the dead-letter topic ~1 MiB: the copy must fit."""
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=1, config={"max.message.bytes": "3000000"})
    out = app.topic(f"{app.id}-out", partitions=1)

    @app.agent(src)
    async def forward(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value)

    huge = b"\xff not json " + b"x" * 1_500_000
    from aiokafka import AIOKafkaProducer

    async with running(app):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                    max_request_size=4_000_000)
        await producer.start()
        try:
            for key, value in [*_inputs(3), (b"huge", huge), *_inputs(3, start=3)]:
                await producer.send_and_wait(src.name, value=value, key=key)
        finally:
            await producer.stop()
        dead = await wait_for_records(kafka_bootstrap, app.settings.dlq_topic, 1, timeout=30)
        records = await wait_for_records(kafka_bootstrap, out.name, 6)
    assert sorted(_ids(records)) == list(range(6))
    assert [d.key for d in dead] == [b"huge"]
    headers = dict(dead[0].headers)
    assert headers["eoflow.truncated"] == str(len(huge)).encode()
    dlq_limit = 1_048_588  # the dead-letter topic's max.message.bytes (Kafka's default)
    assert huge.startswith(dead[0].value or b"")
    assert len(huge) // 2 < len(dead[0].value or b"") < dlq_limit


# -- 17.10: a commit that never returns ---------------------------------------------------


async def test_a_commit_that_hangs_is_abandoned_and_the_interval_redone(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eoflow._transport.producer import TransactionalProducer

    real = TransactionalProducer.commit
    hung: list[int] = []

    async def commit(self: Any) -> None:
        if not hung:
            hung.append(1)
            await asyncio.Event().wait()  # the coordinator never answers
        await real(self)

    monkeypatch.setattr(TransactionalProducer, "commit", commit)
    app = _app(kafka_bootstrap, tmp_path, transaction_timeout=6.0)
    src = app.topic(f"{app.id}-in", partitions=1)
    out = app.topic(f"{app.id}-out", partitions=1)
    counts = app.Table("counts", default=int)

    @app.agent(src)
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            counts[key.decode()] += 1
            await out.send(value={"id": value["id"], "n": counts[key.decode()]})

    async with running(app):
        await produce(kafka_bootstrap, src.name, _inputs(20))
        records = await wait_for_records(kafka_bootstrap, out.name, 20, timeout=40)
        await asyncio.sleep(0.5)
        records = await read_committed(kafka_bootstrap, out.name)
    assert hung, "the commit never hung"
    assert sorted(_ids(records)) == list(range(20))
    per_key = {f"k{k}": [i for i in range(20) if i % 7 == k] for k in range(7)}
    counts_seen = {json.loads(r.value)["id"]: json.loads(r.value)["n"] for r in records}
    for ids in per_key.values():
        assert [counts_seen[i] for i in ids] == list(range(1, len(ids) + 1))


# -- 18: the group coordinator is briefly not available at assignment ---------------------


async def test_coordinator_not_available_at_assignment_is_retried(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after a broker restart FindCoordinator answers COORDINATOR_NOT_AVAILABLE for
    a while; the stable-offset fetch at assignment must retry, not stop the worker."""
    import sys

    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    real = AIOKafkaClient.coordinator_lookup
    refused: list[int] = []

    async def coordinator_lookup(self: Any, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_code.co_name
        if "offsets" in caller and len(refused) < 4:
            refused.append(1)
            raise GroupCoordinatorNotAvailableError()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaClient, "coordinator_lookup", coordinator_lookup)
    app = _app(kafka_bootstrap, tmp_path)
    src = app.topic(f"{app.id}-in", partitions=2)
    out = app.topic(f"{app.id}-out", partitions=2)

    @app.agent(src)
    async def forward(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            await out.send(value=value)

    async with running(app) as worker:
        await produce(kafka_bootstrap, src.name, _inputs(10))
        records = await wait_for_records(kafka_bootstrap, out.name, 10, timeout=30)
        assert not worker.state.is_(WorkerState.FAILED)
    assert len(refused) == 4
    assert sorted(_ids(records)) == list(range(10))
