"""A topic's timestamp_extractor: event time from the value, for windows, stream time,
outputs and repartitioned streams; records it cannot read are dead-lettered, named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import eoflow
from eoflow._windows import Window
from eoflow.errors import ConfigurationError
from eoflow.testing import TestDriver

T0 = 1_714_564_800.0  # 2024-05-01 12:00 UTC; the driver's clock is in 2023


def _app(extractor: Any, closed: list[tuple[str, float, int]]) -> eoflow.App:
    app = eoflow.App("stamps")
    clicks = app.topic("clicks", partitions=1, key_serializer="str",
                       timestamp_extractor=extractor)
    echo = app.topic("echo", partitions=1, key_serializer="str")

    def on_close(key: str, window: Window, count: int) -> None:
        closed.append((key, window.start - T0, count))

    views = app.Table("views", default=int, partitions=1).tumbling(
        60, expires=600, on_window_close=on_close)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, click in stream.items():
            views[user] += 1
            await echo.send(key=user, value=click["page"])

    return app


@pytest.mark.parametrize("extractor", [
    "at",
    lambda v: v["at"],
    lambda v: datetime.fromtimestamp(v["at"], UTC),
], ids=["field name", "function", "datetime"])
async def test_windows_stream_time_and_outputs_follow_the_extracted_time(
        extractor: Any) -> None:
    closed: list[tuple[str, float, int]] = []
    async with TestDriver(_app(extractor, closed)) as driver:
        for at, page in ((T0 + 5, "/a"), (T0 + 50, "/b"), (T0 + 65, "/c")):
            await driver.send("clicks", {"at": at, "page": page}, key="ann")
        await driver.settle()
        # The Kafka timestamps are the driver's clock (2023); the windows are 2024's.
        assert {(k, w.start - T0): n for (k, w), n in driver.table("views").items()} == {
            ("ann", 0.0): 2, ("ann", 60.0): 1}
        assert closed == [("ann", 0.0, 2)]  # stream time moved to T0 + 65 by extraction
        assert [o.timestamp for o in driver.outputs("echo")] == [
            round((T0 + s) * 1000) for s in (5, 50, 65)]


async def test_a_repartitioned_stream_keeps_the_extracted_time() -> None:
    app = eoflow.App("regroup")
    clicks = app.topic("clicks", partitions=2, timestamp_extractor="at")
    per_page = app.Table("per-page", default=int, partitions=2).tumbling(60, expires=600)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[Any, Any]) -> None:
        async for click in stream.group_by(lambda v: v["page"], name="page"):
            per_page[click["page"]] += 1

    async with TestDriver(app) as driver:
        for at in (T0 + 1, T0 + 2, T0 + 61):
            await driver.send("clicks", {"at": at, "page": "/a"})
        await driver.settle()
        assert {(k, w.start - T0): n for (k, w), n in driver.table("per-page").items()} == {
            ("/a", 0.0): 2, ("/a", 60.0): 1}


@pytest.mark.parametrize(("value", "error"), [
    ({"page": "/x"}, "cannot read the event time of clicks[0]@0 with its topic's "
                     "timestamp_extractor: KeyError('at')"),
    ({"at": "noon", "page": "/x"}, "the timestamp_extractor of clicks[0]@0 gave 'noon'"),
    ({"at": -5, "page": "/x"}, "not negative"),
    ({"at": T0 * 1000, "page": "/x"}, "milliseconds?"),
])
async def test_a_record_whose_time_cannot_be_read_is_dead_lettered_and_named(
        value: dict[str, Any], error: str) -> None:
    closed: list[tuple[str, float, int]] = []
    async with TestDriver(_app("at", closed)) as driver:
        await driver.send("clicks", value, key="bob")
        await driver.send("clicks", {"at": T0, "page": "/ok"}, key="bob")
        await driver.settle()
        letters = driver.dead_letters()
        assert len(letters) == 1
        headers = dict(letters[0].headers)
        assert error in headers["eoflow.error"].decode()
        assert (headers["eoflow.topic"], headers["eoflow.offset"]) == (b"clicks", b"0")
        assert driver.values("echo") == ["/ok"]  # the next record goes on


def test_a_timestamp_extractor_must_be_a_field_name_or_a_function() -> None:
    app = eoflow.App("bad")
    with pytest.raises(ConfigurationError, match="timestamp_extractor=42"):
        app.topic("clicks", timestamp_extractor=42)  # type: ignore[arg-type]
