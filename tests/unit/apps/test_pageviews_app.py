"""apps/pageviews.py on the broker-less driver: final counts per user and minute, late
views, and the close hook's output exactly once across crashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.pageviews import MinuteViews, PageView, app, views
from eoflow import Window
from eoflow.testing import TestDriver

NOON = datetime(2024, 5, 1, 12, tzinfo=UTC)
T = NOON.timestamp()
MINUTE = Window(T, T + 60)
NEXT = Window(T + 60, T + 120)
# The repartition topic is keyed by the JSON of the user: "ann" lands in partition 0,
# "bob" and "eve" in partition 2. Minutes close per partition.
REPARTITION = "pageviews-count_views-user-repartition"


def at(user: str, second: float, page: str = "/home") -> PageView:
    return PageView(user=user, page=page, viewed_at=NOON + timedelta(seconds=second))


def final(user: str, views: int) -> MinuteViews:
    return MinuteViews(user=user, start=NOON, end=NOON + timedelta(minutes=1), views=views)


async def send(driver: TestDriver, *views: PageView) -> None:
    for view in views:
        # Any key: the app groups by user itself. The Kafka timestamp is not used.
        await driver.send("page-views", view, key="collector-1", timestamp=T + 3600)


async def test_one_final_count_per_user_and_minute_and_late_views_set_aside() -> None:
    async with TestDriver(app) as driver:
        await send(driver, at("ann", 5), at("ann", 30, "/cart"), at("bob", 20),
                   at("eve", 50), at("ann", 72))
        await driver.settle()
        # ann's 12:01:12 moved partition 0 past 12:01:00 + 10 s of grace: her minute is
        # final. Partition 2 (bob, eve) is still at 12:00:50.
        assert driver.values("views-per-minute") == [final("ann", 2)]

        await send(driver, at("bob", 65), at("bob", 55))  # 12:00:55: after 12:01:05, in grace
        await driver.settle()
        assert driver.values("views-per-minute") == [final("ann", 2)]

        await send(driver, at("eve", 70), at("ann", 40))  # closes bob's and eve's; ann's is late
        await driver.settle()
        assert sorted(driver.values("views-per-minute"), key=lambda m: m.user) == [
            final("ann", 2), final("bob", 2), final("eve", 1)]
        assert driver.values("page-views-late") == [at("ann", 40)]
        assert driver.table("views") == {
            ("ann", MINUTE): 2, ("ann", NEXT): 1, ("bob", MINUTE): 2, ("bob", NEXT): 1,
            ("eve", MINUTE): 1, ("eve", NEXT): 1}
        assert driver.dead_letters() == []


@pytest.mark.parametrize("point", ["before_offsets", "before_commit", "after_commit"])
async def test_the_final_count_is_emitted_once_across_a_crash(
        point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, float]] = []
    hook = views.on_window_close
    assert hook is not None

    async def counted(user: str, window: Window, count: int) -> None:
        runs.append((user, window.start))
        await hook(user, window, count)

    monkeypatch.setattr(views, "on_window_close", counted)
    async with TestDriver(app) as driver:
        await send(driver, at("ann", 5), at("ann", 30))
        await driver.settle()
        # The closing view goes straight to the second hop's topic, so the interval the
        # worker dies in is the one whose transaction holds the hook's output.
        await driver.send(REPARTITION, at("ann", 75), key="ann")
        await driver.crash(at=point)
        await driver.settle()
        assert driver.values("views-per-minute") == [final("ann", 2)]
        assert driver.table("views") == {("ann", MINUTE): 2, ("ann", NEXT): 1}
        # Killed before the commit, the hook ran again after the restart; its output
        # committed once all the same.
        assert runs == [("ann", T)] * (2 if point != "after_commit" else 1)


async def test_a_view_without_a_time_is_dead_lettered() -> None:
    async with TestDriver(app, max_retries=1) as driver:
        # Bytes that PageView's codec would not write: append them to the broker as is.
        driver.broker.append(None, 0, "page-views", 0,
                             [(b"c", b'{"user": "ann", "page": "/home"}', None, ())])
        await send(driver, at("ann", 5))
        await driver.settle()
        [letter] = driver.dead_letters()
        headers: dict[str, Any] = dict(letter.headers)
        assert b"field 'viewed_at': required, but missing" in headers["eoflow.error"]
        assert driver.table("views") == {("ann", MINUTE): 1}
