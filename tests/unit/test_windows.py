"""Windowed tables: assignment, event time, close hooks, expiry, late events, crashes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import eoflow
from eoflow._windows import Hopping, Tumbling, Window
from eoflow.errors import ConfigurationError
from eoflow.testing import TestDriver

T0 = 1_700_000_000.0  # the driver clock's start, on a 60 s boundary: 1_700_000_000 % 60 == 20
BASE = 1_699_999_980.0  # a minute boundary before it


def test_tumbling_windows_hold_their_start_not_their_end() -> None:
    w = Tumbling(60)
    assert w.windows(120.0) == [Window(120, 180)]
    assert w.windows(179.999) == [Window(120, 180)]
    assert w.windows(180.0) == [Window(180, 240)]
    assert Tumbling(timedelta(minutes=1)).size == 60


def test_hopping_windows_overlap() -> None:
    w = Hopping(60, 20)
    assert w.windows(130.0) == [Window(80, 140), Window(100, 160), Window(120, 180)]
    assert w.current(130.0) == Window(120, 180)
    assert Hopping(10, 10).windows(5) == Tumbling(10).windows(5)


@pytest.mark.parametrize(("size", "step"), [(60, 20), (1, 0.5), (1, 0.3), (10, 7), (5, 5)])
def test_a_spec_called_again_gives_the_windows_of_a_fresh_one(size: float,
                                                              step: float) -> None:
    """The specs keep the previous call's windows for the times they still hold: every
    answer equals a fresh spec's, and holds exactly the windows ``[start, end)`` around
    the time, under times that go back and forth across starts and ends."""
    import random

    rng = random.Random(size * 100 + step)
    kept_hopping, kept_tumbling = Hopping(size, step), Tumbling(size)
    t = 1000.0
    for _ in range(3000):
        t = max(0.0, t + rng.choice([rng.uniform(-step, step), rng.uniform(0, step / 50),
                                     round(rng.uniform(-2, 2)) * step, 0.0]))
        expected = Hopping(size, step).windows(t)
        assert kept_hopping.windows(t) == expected
        assert all(w.start <= t < w.end for w in expected)
        assert expected[0].start - step + size <= t < expected[-1].start + step
        assert kept_tumbling.windows(t) == Tumbling(size).windows(t)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Tumbling(0), "positive"),
    (lambda: Tumbling(-5), "positive"),
    (lambda: Hopping(10, 20), "larger than its size"),
])
def test_bad_windows_are_refused_at_declaration(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_expires_shorter_than_grace_is_refused() -> None:
    app = eoflow.App("w")
    with pytest.raises(ConfigurationError, match="deleted before they close"):
        app.Table("t", default=int).tumbling(10, grace=30, expires=20)


def views_app(closed: list[tuple[Any, Window, Any]], late: list[Any], **window: Any
              ) -> tuple[eoflow.App, Any]:
    app = eoflow.App("views")
    clicks = app.topic("clicks", partitions=2, key_serializer="str")
    finals = app.topic("finals", partitions=2, key_serializer="str")

    async def on_close(key: Any, win: Window, value: Any) -> None:
        closed.append((key, win, value))
        await finals.send(key=key, value={"start": win.start, "views": value})

    table = app.Table("views", default=int, partitions=2)
    views = (table.hopping(window.pop("size"), window.pop("step"), on_window_close=on_close,
                           on_late=lambda key, event: late.append(key), **window)
             if "step" in window else
             table.tumbling(window.pop("size"), on_window_close=on_close,
                            on_late=lambda key, event: late.append(key), **window))

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            views[user] += 1

    return app, views


async def test_a_window_closes_once_stream_time_passes_it_and_its_hook_runs_once() -> None:
    closed: list[tuple[Any, Window, Any]] = []
    app, _ = views_app(closed, [], size=60)
    async with TestDriver(app) as driver:
        for t in (BASE + 1, BASE + 30, BASE + 59):
            await driver.send("clicks", {}, key="ann", timestamp=t, partition=0)
        await driver.settle()
        assert closed == []
        assert driver.table("views") == {("ann", Window(BASE, BASE + 60)): 3}
        await driver.send("clicks", {}, key="ann", timestamp=BASE + 61, partition=0)
        await driver.settle()
        assert closed == [("ann", Window(BASE, BASE + 60), 3)]
        assert [o.value for o in driver.outputs("finals")] == [{"start": BASE, "views": 3}]


async def test_late_events_are_not_applied_and_are_reported() -> None:
    late: list[Any] = []
    app, _ = views_app([], late, size=10, grace=5, expires=100)
    async with TestDriver(app) as driver:
        for t in (BASE + 1, BASE + 12, BASE + 16, BASE + 3, BASE + 14):
            await driver.send("clicks", {}, key="bob", timestamp=t, partition=1)
        await driver.settle()
        # stream time 16: window [0, 10) closed at 10 + grace 5 = 15 -> t=3 is late;
        # t=14 falls in [10, 20), still open.
        assert late == ["bob"]
        assert driver.table("views") == {("bob", Window(BASE, BASE + 10)): 1,
                                         ("bob", Window(BASE + 10, BASE + 20)): 3}


async def test_expired_windows_leave_the_store_and_the_changelog_fold() -> None:
    app, _ = views_app([], [], size=10, expires=30)
    async with TestDriver(app) as driver:
        for i in range(20):  # 200 seconds of clicks, one every 10 s
            await driver.send("clicks", {}, key="cid", timestamp=BASE + 10 * i + 1,
                              partition=0)
        await driver.settle()
        windows = sorted(w.start - BASE for (_, w) in driver.table("views"))
        assert windows == [160, 170, 180, 190]  # end + 30 > stream time 191
        assert driver.worker is not None
        stored = [k for k, _ in driver.worker._tables._overlays[("views", 0)].items()]
        assert len([k for k in stored if k.startswith(b"W")]) == 4


async def test_windows_expire_across_a_crash_and_with_irregular_steps_of_stream_time() -> None:
    # Expiry scans only the windows a move of stream time expired: after a restart (stream
    # time read back from the store), after jumps of several windows, and for windows
    # written while open under grace, nothing is left behind.
    app, _ = views_app([], [], size=10, grace=5, expires=30)
    async with TestDriver(app) as driver:
        for t in (1, 4, 12, 9, 27, 55):  # 9: not late (window [0,10) is open until 15)
            await driver.send("clicks", {}, key="dee", timestamp=BASE + t, partition=0)
        await driver.settle()
        await driver.crash()  # the restart reads stream time back from the store
        for t in (58, 131, 133):
            await driver.send("clicks", {}, key="dee", timestamp=BASE + t, partition=0)
        await driver.settle()
        await driver.crash(wipe_stores=True)  # and from the changelog
        await driver.send("clicks", {}, key="dee", timestamp=BASE + 161, partition=0)
        await driver.settle()
        windows = sorted(w.start - BASE for (_, w) in driver.table("views"))
        assert windows == [130, 160]  # end + 30 > stream time 161
        assert driver.worker is not None
        stored = [k for k, _ in driver.worker._tables._overlays[("views", 0)].items()]
        assert len([k for k in stored if k.startswith(b"W")]) == 2


async def test_hopping_windows_count_an_event_in_each_window_that_holds_it() -> None:
    app, _ = views_app([], [], size=30, step=10, expires=1000)
    async with TestDriver(app) as driver:
        await driver.send("clicks", {}, key="dee", timestamp=BASE + 25, partition=0)
        await driver.settle()
        assert sorted(w.start - BASE for (_, w) in driver.table("views")) == [0, 10, 20]


@pytest.mark.parametrize("point", ["before_offsets", "before_commit", "after_commit",
                                   "before_store_write"])
async def test_a_close_hook_fires_exactly_once_across_a_crash(point: str) -> None:
    closed: list[tuple[Any, Window, Any]] = []
    app, _ = views_app(closed, [], size=60)
    async with TestDriver(app) as driver:
        for t in (BASE + 1, BASE + 2):
            await driver.send("clicks", {}, key="eve", timestamp=t, partition=0)
        await driver.settle()
        await driver.send("clicks", {}, key="eve", timestamp=BASE + 70, partition=0)
        await driver.crash(at=point)
        await driver.settle()
        finals = [o.value for o in driver.outputs("finals")]
        assert finals == [{"start": BASE, "views": 2}]  # committed once, whatever ran twice
        assert driver.table("views") == {("eve", Window(BASE, BASE + 60)): 2,
                                         ("eve", Window(BASE + 60, BASE + 120)): 1}


async def test_reads_current_now_and_delta() -> None:
    app = eoflow.App("reads")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    out = app.topic("out", partitions=1)
    views = app.Table("views", default=int).tumbling(10, expires=100)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            views[user] += 1
            w = views[user]
            await out.send(value=[w.current(), w.delta(10), w.now(), w.value()])

    async with TestDriver(app) as driver:
        driver.clock.now = BASE + 15  # wall clock in the second window
        await driver.send("clicks", {}, key="fay", timestamp=BASE + 5)
        await driver.send("clicks", {}, key="fay", timestamp=BASE + 12)
        await driver.settle()
        # event 1: current=1 (window 0), delta back 10 s = before it = 0, now = window 10 = 0
        # event 2: current=1 (window 10), delta = window 0 = 1, now = window 10 = 1
        assert driver.values("out") == [[1, 0, 0, 1], [1, 1, 1, 1]]


async def test_relative_to_field_windows_by_a_field_of_the_value() -> None:
    app = eoflow.App("field")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    views = app.Table("views", default=int).tumbling(60).relative_to_field("at")

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            views[user] += 1

    async with TestDriver(app) as driver:
        await driver.send("clicks", {"at": BASE + 61}, key="gus", timestamp=BASE + 1)
        await driver.settle()
        assert driver.table("views") == {("gus", Window(BASE + 60, BASE + 120)): 1}


async def test_a_record_whose_time_field_is_not_a_time_is_dead_lettered() -> None:
    app = eoflow.App("bad-field")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    views = app.Table("views", default=int).tumbling(60).relative_to_field("at")

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            views[user] += 1

    async with TestDriver(app) as driver:
        await driver.send("clicks", {"at": "yesterday"}, key="bad")
        await driver.send("clicks", {"at": BASE + 1}, key="gus")
        await driver.settle()
        [letter] = driver.dead_letters()
        assert letter.key == b"bad"  # the dead letter keeps the raw bytes
        error = dict(letter.headers)["eoflow.error"].decode()
        assert "clicks[0]@0" in error and "'yesterday'" in error
        assert driver.table("views") == {("gus", Window(BASE, BASE + 60)): 1}


def test_whether_a_move_of_stream_time_passes_a_window_end() -> None:
    tumbling = Tumbling(10)  # ends at multiples of 10 s
    assert not tumbling.ends_between(1_000, 9_999)
    assert tumbling.ends_between(9_999, 10_000)  # (low, high]: 10 s is in
    assert not tumbling.ends_between(10_000, 19_999)
    assert tumbling.ends_between(-5_000, 0)
    hopping = Hopping(25, 10)  # ends at 25, 35, 45, ... s
    assert not hopping.ends_between(25_000, 34_999)
    assert hopping.ends_between(34_999, 35_000)
    assert Tumbling(1 / 3).ends_between(0, 1)  # ends not on whole ms: always scan


@pytest.mark.parametrize(("size", "step", "grace", "expires", "hook"), [
    (10, 10, 0, 10, False), (10, 10, 3, 25, True), (25, 10, 0.5, 40, True),
    (1, 0.5, 0, 10, False), (1, 0.5, 0.25, 2, True), (1 / 3, 1 / 3, 0, 1, True)])
def test_the_due_hint_never_skips_a_move_that_closes_or_expires(
        size: float, step: float, grace: float, expires: float, hook: bool) -> None:
    """Stream time moves skip the close/expiry check while they stay below the hint the
    runtime keeps (``_grid_due``, recomputed only at moves it lets through): every move
    that passes a window end plus grace (with a close hook) or plus expires must be let
    through, under random moves of random sizes."""
    import random

    from eoflow._runtime.tables import TableManager
    from eoflow._windows import WindowedTable

    app = eoflow.App("due", broker="kafka://localhost:1")
    spec = Tumbling(size) if size == step else Hopping(size, step)
    windowed = WindowedTable(app.Table("t", default=int), spec, grace=grace, expires=expires,
                             on_window_close=(lambda k, w, v: None) if hook else None)
    rng = random.Random(7)
    now, due, let_through = 1_000_000, None, 0
    for _ in range(20_000):
        before, now = now, now + rng.choice([1, 7, 50, 333, 999, 1_000, 4_000])
        passes = TableManager._ends_passed(windowed, before, now)
        if due is not None and now < due:
            assert passes == (False, False), (before, now, due)
        else:
            let_through += 1
            due = TableManager._grid_due(windowed, now)
    assert let_through < 20_000 or spec.end_after(0) is None  # the hint skips most moves
