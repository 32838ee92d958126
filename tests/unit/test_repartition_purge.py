"""Purging consumed repartition records: nothing unread is deleted, crashes included."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import eoflow
from eoflow._runtime.purge import RepartitionPurger
from eoflow._transport.base import TopicPartition
from eoflow.errors import ConfigurationError, TransportError
from eoflow.testing import TestDriver


def _app() -> eoflow.App:
    app = eoflow.App("purge")
    src = app.topic("in", partitions=2)
    out = app.topic("out", partitions=2, key_serializer="str")
    counts = app.Table("counts", default=int, partitions=2)

    @app.agent(src, name="count")
    async def count(stream: eoflow.Stream[Any, Any]) -> None:
        async for value in stream.group_by(lambda v: v["k"], name="k"):
            counts[value["k"]] += 1
            await out.send(key=value["k"], value=value["id"])

    return app


REPARTITION = "purge-count-k-repartition"


def _log_starts(driver: TestDriver) -> list[int]:
    return [driver.broker.log(REPARTITION, p).log_start for p in range(2)]


@pytest.mark.parametrize("point", ["before_offsets", "before_commit", "after_commit",
                                   "before_store_write"])
async def test_purged_repartition_loses_nothing_across_crashes(point: str) -> None:
    async with TestDriver(_app(), repartition_purge_interval=0.005) as driver:
        for i in range(60):
            await driver.send("in", {"id": i, "k": f"k{i % 7}"}, partition=i % 2)
        await driver.settle()
        await asyncio.sleep(0.05)  # a few purges
        for i in range(60, 120):
            await driver.send("in", {"id": i, "k": f"k{i % 7}"}, partition=i % 2)
        await driver.crash(at=point)
        await driver.settle()
        await asyncio.sleep(0.05)
        assert sorted(driver.values("out")) == list(range(120))
        assert driver.table("counts") == dict(Counter(f"k{i % 7}" for i in range(120)))
        # The repartition topic was purged, up to what the group committed, not beyond.
        starts = _log_starts(driver)
        assert sum(starts) >= 120, starts
        committed, _ = driver.broker.committed(
            "purge", [TopicPartition(REPARTITION, p) for p in range(2)])
        assert starts == [committed[TopicPartition(REPARTITION, p)] for p in range(2)]


async def test_the_driver_keeps_repartition_records_unless_asked() -> None:
    async with TestDriver(_app()) as driver:
        for i in range(10):
            await driver.send("in", {"id": i, "k": "a"})
        await driver.settle()
        await asyncio.sleep(0.05)
        assert _log_starts(driver) == [0, 0]
        assert len(driver.outputs(REPARTITION)) == 10


async def test_a_refused_purge_is_tried_again_at_the_next_interval() -> None:
    tp = TopicPartition("t-repartition", 0)
    committed = {tp: 5, TopicPartition("other", 0): 9}
    calls: list[dict[TopicPartition, int]] = []

    async def delete(before: Any) -> None:
        calls.append(dict(before))
        if len(calls) == 1:
            raise TransportError("deleting records of t-repartition[0]: refused")

    purger = RepartitionPurger({"t-repartition"}, lambda: committed, delete, 1.0)
    await purger.purge()
    assert purger.purged == {}
    await purger.purge()
    await purger.purge()  # nothing moved: nothing asked
    committed[tp] = 8
    await purger.purge()
    assert calls == [{tp: 5}, {tp: 5}, {tp: 8}]
    assert purger.purged == {tp: 8}


def test_a_negative_purge_interval_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="repartition_purge_interval"):
        eoflow.App("x", repartition_purge_interval=-1)
