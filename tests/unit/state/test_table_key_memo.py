"""A table (plain or windowed) works out a key's partition and encoding once per event and
reuses them for the reads and writes after it: the reuse must never mix up keys or events."""

from __future__ import annotations

from typing import Any

import pytest

import eoflow
from eoflow.testing import TestDriver

MINUTE = 1_699_999_980.0  # a minute boundary: both events in one 60 s window


@pytest.mark.parametrize("windowed", [False, True], ids=["plain", "tumbling"])
async def test_keys_equal_in_python_but_not_as_json_stay_apart_in_one_event(
        windowed: bool) -> None:
    """``1 == True``, and a dict key may be changed in place between two uses in one
    event: a table write or read (plain or windowed) must never reuse another key's
    encoding."""
    app = eoflow.App("memo", broker="kafka://localhost:1")
    events = app.topic("ev", value_serializer="json")
    out = app.topic("out", value_serializer="json")
    table = app.Table("counts", default=int, key_serializer="json")
    counts: Any = table.tumbling(60, expires=600) if windowed else table

    def read(key: Any) -> Any:
        return counts[key].current() if windowed else counts[key]

    @app.agent(events)
    async def count(stream: Any) -> None:
        async for _ in stream:
            counts[1] += 1
            counts[True] += 10
            key = {"a": 1}
            counts[key] += 100
            key["a"] = 2
            counts[key] += 1000
            await out.send(value=[read(1), read(True), read({"a": 1}), read(key)])

    async with TestDriver(app) as driver:
        await driver.send("ev", "x", timestamp=MINUTE + 1)
        await driver.send("ev", "y", timestamp=MINUTE + 2)
        await driver.settle()
        assert sorted(o.value for o in driver.outputs("out")) == [[1, 10, 100, 1000],
                                                                 [2, 20, 200, 2000]]


async def test_each_event_writes_to_its_own_partition_and_deletes_see_the_write() -> None:
    """Two events of one key on different partitions (the key is the table key, not the
    record key) each count in their own partition, though the key is the last one used;
    ``in`` and ``del`` after a write in the same event see it."""
    app = eoflow.App("plain-memo-parts", broker="kafka://localhost:1")
    events = app.topic("ev", partitions=2, key_serializer="str", value_serializer="json")
    out = app.topic("out", value_serializer="json")
    seen = app.Table("seen", default=int, partitions=2)

    @app.agent(events)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            seen["same"] += 1  # the previous event's last key, too
            present = "same" in seen
            seen["gone"] = 1
            del seen["gone"]
            gone = "gone" in seen
            await out.send(value=[event.partition, seen["same"], present, gone])

    async with TestDriver(app) as driver:
        await driver.send("ev", "a", partition=0)
        await driver.send("ev", "b", partition=1)
        await driver.send("ev", "c", partition=0)
        await driver.settle()
        assert sorted(o.value for o in driver.outputs("out")) == [
            [0, 1, True, False], [0, 2, True, False], [1, 1, True, False]]
        assert seen.partition(0)["same"] == 2
        assert seen.partition(1)["same"] == 1
