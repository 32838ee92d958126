"""Session windows: joining, merging, closing once, lateness, expiry, crashes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import eoflow
from eoflow._windows import Session, Window
from eoflow.errors import ConfigurationError, TableUsageError
from eoflow.testing import TestDriver
from tests.unit.windowing import send_clicks, stored_keys

BASE = 1_699_999_980.0


def sessions_app(closed: list[tuple[Any, Window, Any]], late: list[Any], *, gap: float,
                 **options: Any) -> eoflow.App:
    app = eoflow.App("sessions")
    clicks = app.topic("clicks", partitions=2, key_serializer="str")
    finals = app.topic("finals", partitions=2, key_serializer="str")

    async def on_close(key: Any, win: Window, value: Any) -> None:
        closed.append((key, win, value))
        await finals.send(key=key, value={"start": win.start, "end": win.end, "n": value})

    visits = app.Table("visits", default=int, partitions=2).session(
        gap, on_window_close=on_close, on_late=lambda key, event: late.append(key), **options)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            visits[user] += 1

    return app


async def _clicks(driver: TestDriver, key: str, *times: float, partition: int = 0) -> None:
    await send_clicks(driver, key, *times, base=BASE, partition=partition)


def _sessions(driver: TestDriver) -> dict[tuple[str, float, float], int]:
    return {(k, w.start - BASE, w.end - BASE): v for (k, w), v in driver.table("visits").items()}


def _stored(driver: TestDriver, partition: int = 0) -> list[bytes]:
    return stored_keys(driver, "visits", partition)


def test_a_session_is_refused_a_gap_that_is_not_positive() -> None:
    with pytest.raises(ConfigurationError, match="session gap must be a positive"):
        Session(0)


async def test_events_within_gap_share_a_session_and_others_start_their_own() -> None:
    app = sessions_app([], [], gap=10, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 4, 13, 23, 40)  # 23 - 13 = 10: not less than gap
        await _clicks(driver, "bob", 45, partition=1)
        assert _sessions(driver) == {("ann", 0, 13): 3, ("ann", 23, 23): 1,
                                     ("ann", 40, 40): 1, ("bob", 45, 45): 1}


async def test_an_event_between_two_sessions_merges_them() -> None:
    app = sessions_app([], [], gap=10, grace=30, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 2, 20, 21, 22)
        assert _sessions(driver) == {("ann", 0, 2): 2, ("ann", 20, 22): 3}
        await _clicks(driver, "ann", 11)  # out of order, within grace: 11-2, 20-11 < 10
        assert _sessions(driver) == {("ann", 0, 22): 6}
        # the merged sessions left nothing behind: one window key, one index entry
        assert [k[:1] for k in _stored(driver) if k[:1] in (b"W", b"S")] == [b"S", b"W"]


async def test_merge_combines_values_that_are_not_numbers() -> None:
    app = eoflow.App("pages")
    views = app.topic("views", partitions=1, key_serializer="str")
    paths = app.Table("paths", default=list).session(
        10, grace=30, merge=lambda a, b: sorted(a + b), expires=100)

    @app.agent(views)
    async def track(stream: eoflow.Stream[str, Any]) -> None:
        async for user, page in stream.items():
            paths[user] += [page]

    async with TestDriver(app) as driver:
        for t, page in ((0, "/b"), (18, "/a"), (9, "/c")):
            await driver.send("views", page, key="ann", timestamp=BASE + t)
        await driver.settle()
        assert driver.table("paths") == {("ann", Window(BASE, BASE + 18)): ["/a", "/b", "/c"]}


async def test_values_that_cannot_be_added_need_a_merge_and_the_error_says_so() -> None:
    app = eoflow.App("carts")
    items = app.topic("items", partitions=1, key_serializer="str")
    carts = app.Table("carts", default=dict).session(10, grace=30, expires=100)

    @app.agent(items)
    async def add(stream: eoflow.Stream[str, Any]) -> None:
        async for user, item in stream.items():
            carts[user] |= {item: 1}

    driver = TestDriver(app)
    # A programming error, like any TypeError in an agent: the worker stops, and the
    # interval of the event that could not be applied commits nothing.
    with pytest.raises(TableUsageError, match=r"cannot merge the sessions of key 'ann'.*merge="):
        async with driver:
            for t, item in ((0, "x"), (18, "y")):
                await driver.send("items", item, key="ann", timestamp=BASE + t)
            await driver.settle()
            await driver.send("items", "z", key="ann", timestamp=BASE + 9)
            await driver.settle()
    assert driver.table("carts") == {("ann", Window(BASE, BASE)): {"x": 1},
                                     ("ann", Window(BASE + 18, BASE + 18)): {"y": 1}}


async def test_a_session_closes_once_stream_time_passes_end_plus_gap_plus_grace() -> None:
    closed: list[tuple[Any, Window, Any]] = []
    app = sessions_app(closed, [], gap=10, grace=5)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 8)
        await _clicks(driver, "bob", 22)  # 8 + 10 + 5 = 23: not yet
        assert closed == []
        await _clicks(driver, "bob", 23)
        assert closed == [("ann", Window(BASE, BASE + 8), 2)]
        await _clicks(driver, "bob", 50, 60)
        assert closed == [("ann", Window(BASE, BASE + 8), 2),
                          ("bob", Window(BASE + 22, BASE + 23), 2)]
        assert [o.value["n"] for o in driver.outputs("finals")] == [2, 2]


async def test_an_event_older_than_stream_time_minus_grace_is_late() -> None:
    late: list[Any] = []
    app = sessions_app([], late, gap=10, grace=5, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 30)
        # 25 is not older than 30 - 5: it joins [30, 30]; 24 is, so it is late and not
        # applied (a late event could reach a session that closed: here, with a gap of
        # 25, [0, 0] would have closed at 0 + 25 + 5 = 30 and 24 would be within gap).
        await _clicks(driver, "ann", 25, 24)
        assert late == ["ann"]
        assert _sessions(driver) == {("ann", 0, 0): 1, ("ann", 25, 30): 2}


async def test_expired_sessions_leave_the_store_and_their_index() -> None:
    app = sessions_app([], [], gap=10, expires=20)
    async with TestDriver(app) as driver:
        for i in range(10):  # a session per key every 100 s
            await _clicks(driver, f"u{i % 3}", 100 * i, 100 * i + 5)
        assert _sessions(driver) == {("u0", 900, 905): 2}
        assert driver.worker is not None
        stored = _stored(driver)
        assert [k for k in stored if k.startswith(b"S")] == [b'S"u0"']
        assert len([k for k in stored if k.startswith(b"W")]) == 1


async def test_reads_find_the_session_holding_a_time() -> None:
    app = eoflow.App("reads")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    out = app.topic("out", partitions=1)
    visits = app.Table("visits", default=int).session(10, expires=100)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            visits[user] += 1
            v = visits[user]
            await out.send(value=[v.current(), v.delta(3), v.now()])

    async with TestDriver(app) as driver:
        driver.clock.now = BASE + 4
        for t in (0, 5, 40):
            await driver.send("clicks", {}, key="fay", timestamp=BASE + t)
        await driver.settle()
        # t=0: [0,0]=1, 3 s before: no session, now=4: no session holds 4 yet
        # t=5: [0,5]=2, t-3=2 is in it, now=4 is in it
        # t=40: a new session [40,40]=1, 37: none, now=4: the old session, still stored
        assert driver.values("out") == [[1, 0, 0], [2, 2, 2], [1, 0, 2]]


@pytest.mark.parametrize("point", ["before_offsets", "before_commit", "after_commit",
                                   "before_store_write"])
async def test_a_merged_session_closes_exactly_once_across_a_crash(point: str) -> None:
    closed: list[tuple[Any, Window, Any]] = []
    app = sessions_app(closed, [], gap=10, grace=20, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "eve", 0, 15)
        await _clicks(driver, "eve", 7)  # merges [0,0] and [15,15]
        await driver.send("clicks", {}, key="eve", timestamp=BASE + 100, partition=0)
        await driver.crash(at=point)
        await driver.settle()
        finals = [o.value for o in driver.outputs("finals")]
        assert finals == [{"start": BASE, "end": BASE + 15, "n": 3}]
        assert _sessions(driver) == {("eve", 0, 15): 3, ("eve", 100, 100): 1}


async def test_sessions_come_back_from_the_changelog_with_their_index() -> None:
    app = sessions_app([], [], gap=10, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "gus", 0, 6, partition=1)
        await driver.crash(wipe_stores=True)
        await _clicks(driver, "gus", 12, partition=1)  # joins [0, 6] read back from the log
        assert _sessions(driver) == {("gus", 0, 12): 3}


def _fold(events: list[tuple[str, int]], gap: int, grace: int, expires: int
          ) -> tuple[dict[tuple[str, float, float], int], list[tuple[str, float, float, int]]]:
    """What a session table must hold, and which sessions must have closed with which
    counts, after ``events`` (key, time) in this order on one partition: the rules of
    ``Table.session`` written out plainly."""
    sessions: dict[str, list[list[int]]] = {}  # key -> [[start, end, count], ...]
    closed: list[tuple[str, float, float, int]] = []
    stream: int | None = None
    for key, t in events:
        stream = t if stream is None else max(stream, t)
        if t + grace < stream:
            continue  # late
        mine = sessions.setdefault(key, [])
        joined = [s for s in mine if s[0] - gap < t < s[1] + gap]
        merged = [min([t, *(s[0] for s in joined)]), max([t, *(s[1] for s in joined)]),
                  1 + sum(s[2] for s in joined)]
        mine[:] = [s for s in mine if s not in joined] + [merged]
        for k, held in sessions.items():
            for s in list(held):
                if s[1] + gap + grace <= stream and (k, s[0], s[1], s[2]) not in closed:
                    closed.append((k, s[0], s[1], s[2]))
                if s[1] + gap + expires <= stream:
                    held.remove(s)
    table = {(k, float(s[0]), float(s[1])): s[2] for k, held in sessions.items() for s in held}
    return table, closed


@pytest.mark.parametrize("seed", range(4))
async def test_sessions_match_their_rules_under_random_times_and_crashes(seed: int) -> None:
    import random

    rng = random.Random(seed)
    gap, grace, expires = 10, 6, 25
    events: list[tuple[str, int]] = []
    now = 0
    for _ in range(240):
        now += rng.choice((0, 1, 2, 3, 5, 9, 12))
        events.append((rng.choice("abcd"), max(now - rng.choice((0, 0, 0, 4, 8)), 0)))
    closed: list[tuple[Any, Window, Any]] = []
    app = sessions_app(closed, [], gap=gap, grace=grace, expires=expires)
    async with TestDriver(app) as driver:
        for i, (key, t) in enumerate(events):
            await driver.send("clicks", {}, key=key, timestamp=BASE + t, partition=0)
            if i % 40 == 39:
                await driver.crash(at=rng.choice(["before_offsets", "before_commit",
                                                  "after_commit", "before_store_write", None]))
        await driver.settle()
        table, finals = _fold(events, gap, grace, expires)
        assert _sessions(driver) == table
        committed = [(o.key, o.value["start"] - BASE, o.value["end"] - BASE, o.value["n"])
                     for o in driver.outputs("finals")]
        assert sorted(committed) == sorted(finals)


async def test_the_visits_example_of_the_windows_guide() -> None:
    """docs/windows.md, "Session windows": a straggler merges two visits, the merged visit
    closes once with every page, and a click older than stream time minus grace is late."""
    app = eoflow.App("visits")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    sessions_out = app.topic("sessions", partitions=1, key_serializer="str")
    late: list[tuple[str, str]] = []

    async def emit(user: str, window: Window, pages: list[str]) -> None:
        await sessions_out.send(key=user, value={"start": window.start, "end": window.end,
                                                 "pages": pages})

    visits = app.Table("visits", default=list).session(
        timedelta(minutes=30), grace=timedelta(minutes=30), expires=timedelta(hours=2),
        on_window_close=emit, on_late=lambda user, event: late.append((user, event.value)))

    @app.agent(clicks)
    async def track(stream: eoflow.Stream[str, str]) -> None:
        async for user, page in stream.items():
            visits[user] += [page]

    noon = 1714564800.0
    async with TestDriver(app) as driver:
        for minute, page in ((0, "/home"), (40, "/cart"), (20, "/faq")):
            await driver.send("clicks", page, key="ann", timestamp=noon + 60 * minute)
        await driver.settle()
        assert {(k, w.start, w.end): v for (k, w), v in driver.table("visits").items()} == {
            ("ann", noon, noon + 2400): ["/home", "/cart", "/faq"]}
        assert driver.values("sessions") == []
        await driver.send("clicks", "/home", key="ann", timestamp=noon + 60 * 101)
        await driver.send("clicks", "/old", key="ann", timestamp=noon + 60 * 70)
        await driver.settle()
        assert driver.values("sessions") == [
            {"start": noon, "end": noon + 2400, "pages": ["/home", "/cart", "/faq"]}]
        assert late == [("ann", "/old")]
