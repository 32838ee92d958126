"""The changelog partitions an interval writes join its transaction before the commit.

Their AddPartitionsToTxn then happens while agents run, and the commit does not wait for
that round trip (the output partitions are added the same way, by the linger tick's
batches). The in-memory producer needs no such hint, so the test records it.

The hint cannot reach a transaction that is committing: the linger tick that gives it and
the commit both run on the worker's control loop, one after the other.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import eoflow
from eoflow._transport.memory.clients import MemoryProducer
from eoflow.testing import TestDriver


@pytest.fixture
def expected(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, set[tuple[str, int]]]]:
    """Every ``expect`` call: (whether a transaction was open, the partitions)."""
    calls: list[tuple[bool, set[tuple[str, int]]]] = []

    def expect(self: MemoryProducer, partitions: Any) -> None:
        calls.append((self._in_transaction, {tuple(tp) for tp in partitions}))

    monkeypatch.setattr(MemoryProducer, "expect", expect)
    return calls


def counting_app() -> tuple[eoflow.App, Any]:
    app = eoflow.App("expects", broker="kafka://localhost:1")
    events = app.topic("ev", partitions=4, key_serializer="str", value_serializer="json")
    out = app.topic("out", value_serializer="json")
    counts = app.Table("counts", default=int, partitions=4)

    @app.agent(events)
    async def count(stream: Any) -> None:
        async for key, _ in stream.items():
            counts[key] += 1
            await out.send(value=counts[key])

    return app, counts


async def test_written_changelog_partitions_join_the_open_transaction(
        expected: list[tuple[bool, set[tuple[str, int]]]]) -> None:
    app, _ = counting_app()
    async with TestDriver(app, commit_interval=0.5) as driver:
        await driver.send("ev", 1, key="a", partition=2)
        deadline = asyncio.get_running_loop().time() + 0.4  # before the interval commits
        while not any(tps for _, tps in expected):
            assert asyncio.get_running_loop().time() < deadline, expected
            await asyncio.sleep(0.005)
        assert driver.worker is not None and driver.worker.interval_open  # not committed
        hinted = set().union(*(tps for _, tps in expected))
        assert hinted == {("expects-counts-changelog", 2)}  # only the partition written
        assert all(in_txn for in_txn, tps in expected if tps)
        await driver.settle()
        assert driver.table("counts") == {"a": 1}
