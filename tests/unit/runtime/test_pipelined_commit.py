"""The next interval takes events while the previous one commits (on the in-memory
transport: the worker's own code, no broker).

While an interval's EndTxn is in flight, agents go on with the next interval's events:
they read the table as the committing interval left it, their records wait for the next
transaction (none reaches the broker, not even uncommitted), and a commit that fails
throws their work away with its own, so every input still counts exactly once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import eoflow
from eoflow._transport.memory import MemoryBroker, MemoryTransport
from eoflow._transport.memory.clients import MemoryProducer
from eoflow.errors import TransactionAbortedError
from eoflow.testing import running

from .test_commit_cycle import until


def outputs(broker: MemoryBroker) -> list[dict[str, Any]]:
    return [json.loads(r.value or b"null") for log in broker.logs.get("out", [])
            for r in log.read(0, 1 << 30)[0]]


def produce(broker: MemoryBroker, ids: range) -> None:
    for i in ids:
        broker.append(None, 0, "in", 0, [(b"k", json.dumps({"id": i}).encode(), None, ())])


def counting_app(tmp_path: Path, seen: list[tuple[int, int]]) -> eoflow.App:
    app = eoflow.App(f"p-{uuid.uuid4().hex[:6]}", datadir=tmp_path / "data",
                     commit_interval=0.05)
    src, out = app.topic("in", partitions=1), app.topic("out", partitions=1)
    counts = app.Table("counts", default=int)

    @app.agent(src, name="count")
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream:
            counts["k"] += 1
            seen.append((value["id"], counts["k"]))
            await out.send(key=b"k", value={"id": value["id"], "n": counts["k"]})

    return app


class _GatedCommit:
    """Holds the first EndTxn with records until released; then commits it, or fails it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.held, self.release = asyncio.Event(), asyncio.Event()
        self._fail = fail
        real = MemoryProducer.commit
        gate = self

        async def commit(producer: MemoryProducer) -> None:
            if not gate.held.is_set():
                gate.held.set()
                await gate.release.wait()
                if gate._fail:
                    raise TransactionAbortedError("EndTxn failed (injected)")
            await real(producer)

        monkeypatch.setattr(MemoryProducer, "commit", commit)


def _setup() -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topic("in", 1)
    broker.create_topic("out", 1)
    return broker


async def test_agents_go_on_while_the_previous_end_txn_is_in_flight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _setup()
    gate = _GatedCommit(monkeypatch)
    seen: list[tuple[int, int]] = []
    async with running(counting_app(tmp_path, seen), transport=MemoryTransport(broker)):
        produce(broker, range(5))
        await until(lambda: len(seen) == 5, "the first five events")
        await asyncio.wait_for(gate.held.wait(), 5)
        first = broker.logs["out"][0].high_watermark  # what the committing interval sent
        produce(broker, range(5, 10))
        # The commit is stuck in EndTxn; the agent processes the next events meanwhile,
        # reading the counts the committing interval wrote (not yet in the store).
        await until(lambda: len(seen) == 10, "the next events, during the commit")
        assert [n for _, n in seen] == list(range(1, 11))
        # Their records wait for the next transaction: the open one must not take them.
        assert broker.logs["out"][0].high_watermark == first
        gate.release.set()
        await until(lambda: len(outputs(broker)) == 10, "ten committed outputs")
    assert [(o["id"], o["n"]) for o in outputs(broker)] == [(i, i + 1) for i in range(10)]


async def test_a_failed_end_txn_throws_away_the_next_intervals_work_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _setup()
    gate = _GatedCommit(monkeypatch, fail=True)
    seen: list[tuple[int, int]] = []
    async with running(counting_app(tmp_path, seen),
                       transport=MemoryTransport(broker)) as worker:
        produce(broker, range(5))
        await asyncio.wait_for(gate.held.wait(), 5)
        produce(broker, range(5, 10))
        await until(lambda: len(seen) >= 10, "the next events, during the commit")
        gate.release.set()
        await until(lambda: len(outputs(broker)) == 10, "ten committed outputs")
        assert worker.committer is not None and worker.committer.aborts >= 1
    # Both intervals were processed again from the committed state: once each in the
    # output, and the count went up by one per input.
    assert [(o["id"], o["n"]) for o in outputs(broker)] == [(i, i + 1) for i in range(10)]


async def test_a_failed_end_txn_while_the_next_interval_waits_to_begin_does_not_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead letter of the next interval needs its transaction, so the dispatcher waits
    for the EndTxn in flight. When that EndTxn fails, the abort must wake it, not wait for
    it: the dispatcher holds what the abort's barrier waits on."""
    broker = _setup()
    gate = _GatedCommit(monkeypatch, fail=True)
    seen: list[tuple[int, int]] = []
    app = counting_app(tmp_path, seen)
    async with running(app, transport=MemoryTransport(broker)) as worker:
        produce(broker, range(5))
        await asyncio.wait_for(gate.held.wait(), 5)
        broker.append(None, 0, "in", 0, [(b"k", b"{not json", None, ())])
        produce(broker, range(5, 8))
        await asyncio.sleep(0.2)  # the dispatcher reaches the undecodable record
        gate.release.set()
        await until(lambda: len(outputs(broker)) == 8, "eight committed outputs")
        assert worker.committer is not None and worker.committer.aborts >= 1
    assert [(o["id"], o["n"]) for o in outputs(broker)] == [(i, i + 1) for i in range(8)]
    dead = [r for log in broker.logs[f"{app.id}-dlq"] for r in log.read(0, 100)[0]]
    assert [r.value for r in dead] == [b"{not json"]
