"""Sliding windows: reads over the last `size`, out-of-order events, closing once,
lateness, expiry, crashes and restore."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

import eoflow
from eoflow._windows import Sliding, Window
from eoflow.errors import ConfigurationError, TableUsageError
from eoflow.testing import TestDriver
from tests.unit.windowing import send_clicks, stored_keys

BASE = 1_699_999_980.0


def sliding_app(closed: list[tuple[Any, Window, Any]], late: list[Any], *, size: float,
                **options: Any) -> eoflow.App:
    """Counts clicks per user in a sliding table; each click emits the count over the last
    ``size`` seconds as of its time to ``seen``, each closed window its count to
    ``finals``."""
    app = eoflow.App("sliding")
    clicks = app.topic("clicks", partitions=2, key_serializer="str")
    seen = app.topic("seen", partitions=1, key_serializer="str")  # in the order read
    finals = app.topic("finals", partitions=2, key_serializer="str")

    async def on_close(key: Any, win: Window, value: Any) -> None:
        closed.append((key, win, value))
        await finals.send(key=key, value={"start": win.start, "end": win.end, "n": value})

    recent = app.Table("recent", default=int, partitions=2).sliding(
        size, on_window_close=on_close, on_late=lambda key, event: late.append(key),
        **options)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            recent[user] += 1
            await seen.send(key=user, value=recent[user].current())

    return app


async def _clicks(driver: TestDriver, key: str, *times: float, partition: int = 0) -> None:
    await send_clicks(driver, key, *times, base=BASE, partition=partition)


def _windows(driver: TestDriver) -> dict[tuple[str, float, float], int]:
    return {(k, w.start - BASE, w.end - BASE): v for (k, w), v in driver.table("recent").items()}


def _stored(driver: TestDriver, partition: int = 0) -> list[bytes]:
    return stored_keys(driver, "recent", partition)


def test_a_sliding_window_is_refused_a_size_that_is_not_positive() -> None:
    with pytest.raises(ConfigurationError, match="window size must be a positive"):
        Sliding(-1)


async def test_a_read_counts_the_events_of_the_last_size_both_ends_included() -> None:
    app = sliding_app([], [], size=10, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 4, 10, 11, 25, 25)
        # [-10,0]: 0 · [-6,4]: 0,4 · [0,10]: 0,4,10 · [1,11]: 4,10,11 · [15,25]: 25 twice
        assert driver.values("seen") == [1, 2, 3, 3, 1, 2]
        assert _windows(driver) == {("ann", -10, 0): 1, ("ann", -6, 4): 2, ("ann", 0, 10): 3,
                                    ("ann", 1, 11): 3, ("ann", 15, 25): 2}


async def test_an_out_of_order_event_counts_in_every_later_window_that_holds_it() -> None:
    app = sliding_app([], [], size=10, grace=30, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 12)
        await _clicks(driver, "ann", 5)  # in [-5,5] (its own), [2,12]; not in [-10,0]
        assert driver.values("seen") == [1, 1, 2]
        assert _windows(driver) == {("ann", -10, 0): 1, ("ann", -5, 5): 2, ("ann", 2, 12): 2}


async def test_the_window_ending_at_an_event_closes_once_at_its_time_plus_grace() -> None:
    closed: list[tuple[Any, Window, Any]] = []
    app = sliding_app(closed, [], size=10, grace=5)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 0, 8)
        await _clicks(driver, "bob", 13, partition=0)  # 8 + 5 = 13: [-2,8] still open
        assert closed == [("ann", Window(BASE - 10, BASE), 1)]
        await _clicks(driver, "bob", 13.001, partition=0)  # an event at 8 would be late now
        assert closed[1:] == [("ann", Window(BASE - 2, BASE + 8), 2)]
        await _clicks(driver, "bob", 40, partition=0)
        assert closed[2:] == [("bob", Window(BASE + 3, BASE + 13), 1),
                              ("bob", Window(BASE + 3.001, BASE + 13.001), 2)]
        assert [o.value["n"] for o in driver.outputs("finals")] == [1, 2, 1, 2]


async def test_an_event_older_than_stream_time_minus_grace_is_late() -> None:
    late: list[Any] = []
    app = sliding_app([], late, size=10, grace=5, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "ann", 20)
        await _clicks(driver, "ann", 15, 14)  # 15 is not older than 20 - 5; 14 is
        assert late == ["ann"]
        assert driver.values("seen") == [1, 1, 0]  # 14 reads [4,14]: 15 and 20 are not in
        assert _windows(driver) == {("ann", 5, 15): 1, ("ann", 10, 20): 2}


async def test_contributions_expire_from_the_store_and_the_index() -> None:
    app = sliding_app([], [], size=10, expires=20)
    async with TestDriver(app) as driver:
        for i in range(10):  # a key every 100 s
            await _clicks(driver, f"u{i % 3}", 100 * i, 100 * i + 5)
        # 900 and 905 stay (905 + 10 + 20 > 905); everything older went
        assert _windows(driver) == {("u0", 890, 900): 1, ("u0", 895, 905): 2}
        stored = _stored(driver)
        assert [k for k in stored if k.startswith(b"S")] == [b'S"u0"']
        assert len([k for k in stored if k.startswith(b"W")]) == 2


async def test_reads_relative_to_now_and_delta_and_a_given_window() -> None:
    app = eoflow.App("reads")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    out = app.topic("out", partitions=1)
    recent = app.Table("recent", default=int).sliding(10, grace=60, expires=100)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            recent[user] += 1
            r = recent[user]
            await out.send(value=[r.current(), r.delta(5), r.now(),
                                  r[Window(BASE + 1, BASE + 30)]])

    async with TestDriver(app) as driver:
        driver.clock.now = BASE + 7
        for t in (0, 5, 14, 30):
            await driver.send("clicks", {}, key="fay", timestamp=BASE + t)
        await driver.settle()
        # current [t-10,t]; delta(5) [t-15,t-5]; now [-3,7]; the given window [1,30]
        assert driver.values("out") == [[1, 0, 1, 0], [2, 1, 2, 1], [2, 2, 2, 2],
                                        [1, 0, 2, 3]]


async def test_merge_combines_contributions_that_are_not_numbers() -> None:
    app = eoflow.App("pages")
    views = app.topic("views", partitions=1, key_serializer="str")
    out = app.topic("out", partitions=1)
    pages = app.Table("pages", default=list).sliding(
        10, grace=30, merge=lambda a, b: sorted(set(a) | set(b)), expires=100)

    @app.agent(views)
    async def track(stream: eoflow.Stream[str, Any]) -> None:
        async for user, page in stream.items():
            pages[user] += [page]
            await out.send(value=pages[user].current())

    async with TestDriver(app) as driver:
        for t, page in ((0, "/b"), (4, "/a"), (4, "/b"), (13, "/c")):
            await driver.send("views", page, key="ann", timestamp=BASE + t)
        await driver.settle()
        assert driver.values("out") == [["/b"], ["/a", "/b"], ["/a", "/b"], ["/a", "/b", "/c"]]


async def test_contributions_that_cannot_be_added_need_a_merge_and_the_error_says_so() -> None:
    app = eoflow.App("carts")
    items = app.topic("items", partitions=1, key_serializer="str")
    carts = app.Table("carts", default=dict).sliding(10, grace=30, expires=100)

    @app.agent(items)
    async def add(stream: eoflow.Stream[str, Any]) -> None:
        async for user, item in stream.items():
            carts[user] |= {item: 1}
            carts[user].current()

    driver = TestDriver(app)
    with pytest.raises(TableUsageError,
                       match=r"sliding table 'carts': cannot merge the contributions in "
                             r"Window\(.*\) of key 'ann'.*merge="):
        async with driver:
            for t, item in ((0, "x"), (3, "y")):
                await driver.send("items", item, key="ann", timestamp=BASE + t)
            await driver.settle()


@pytest.mark.parametrize("point", ["before_offsets", "before_commit", "after_commit",
                                   "before_store_write"])
async def test_a_window_closes_exactly_once_across_a_crash(point: str) -> None:
    closed: list[tuple[Any, Window, Any]] = []
    app = sliding_app(closed, [], size=10, grace=20, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "eve", 0, 15)
        await _clicks(driver, "eve", 7)  # out of order: counts in [5,15] too
        await driver.send("clicks", {}, key="eve", timestamp=BASE + 100, partition=0)
        await driver.crash(at=point)
        await driver.settle()
        finals = [(o.value["start"] - BASE, o.value["end"] - BASE, o.value["n"])
                  for o in driver.outputs("finals")]
        assert finals == [(-10, 0, 1), (-3, 7, 2), (5, 15, 2)]
        assert driver.values("seen") == [1, 1, 2, 1]


async def test_contributions_come_back_from_the_changelog_with_their_index() -> None:
    app = sliding_app([], [], size=10, expires=1000)
    async with TestDriver(app) as driver:
        await _clicks(driver, "gus", 0, 6, partition=1)
        await driver.crash(wipe_stores=True)
        await _clicks(driver, "gus", 9, partition=1)  # [-1,9] reads 0 and 6 from the log
        assert driver.values("seen") == [1, 2, 3]


def _fold(events: list[tuple[str, int]], size: int, grace: int, expires: int
          ) -> tuple[dict[tuple[str, float, float], int], list[tuple[str, float, float, int]],
                     list[int]]:
    """What a sliding count must hold, which windows must have closed with which counts,
    and what each event read, after ``events`` (key, time) in this order on one
    partition: the rules of ``Table.sliding`` written out plainly."""
    times: dict[str, list[int]] = {}  # key -> the time of every applied event
    closed: list[tuple[str, float, float, int]] = []
    reads: list[int] = []
    stream: int | None = None

    def count(key: str, low: int, high: int) -> int:
        return sum(1 for t in times.get(key, []) if low <= t <= high)

    for key, t in events:
        stream = t if stream is None else max(stream, t)
        if t + grace < stream:  # late: not applied, but the agent still reads
            reads.append(count(key, t - size, t))
            continue
        times.setdefault(key, []).append(t)
        reads.append(count(key, t - size, t))
        for k, held in times.items():
            for end in sorted(set(held)):
                if end + grace < stream and (k, end - size, end) not in {c[:3] for c in closed}:
                    closed.append((k, end - size, end, count(k, end - size, end)))
            times[k] = [x for x in held if x + size + expires >= stream]
    table = {(k, float(end - size), float(end)): count(k, end - size, end)
             for k, held in times.items() for end in set(held)}
    return table, closed, reads


@pytest.mark.parametrize("seed", range(4))
async def test_sliding_windows_match_their_rules_under_random_times_and_crashes(
        seed: int) -> None:
    rng = random.Random(seed)
    size, grace, expires = 10, 6, 25
    events: list[tuple[str, int]] = []
    now = 0
    for _ in range(240):
        now += rng.choice((0, 1, 2, 3, 5, 9, 12))
        events.append((rng.choice("abcd"), max(now - rng.choice((0, 0, 0, 4, 8)), 0)))
    closed: list[tuple[Any, Window, Any]] = []
    app = sliding_app(closed, [], size=size, grace=grace, expires=expires)
    async with TestDriver(app) as driver:
        for i, (key, t) in enumerate(events):
            await driver.send("clicks", {}, key=key, timestamp=BASE + t, partition=0)
            if i % 40 == 39:
                await driver.crash(at=rng.choice(["before_offsets", "before_commit",
                                                  "after_commit", "before_store_write", None]))
        await driver.settle()
        table, finals, reads = _fold(events, size, grace, expires)
        assert _windows(driver) == table
        committed = [(o.key, o.value["start"] - BASE, o.value["end"] - BASE, o.value["n"])
                     for o in driver.outputs("finals")]
        assert sorted(committed) == sorted(finals)
        assert driver.values("seen") == reads


async def test_the_withdrawals_example_of_the_windows_guide() -> None:
    """docs/windows.md, "Sliding windows": more than 3 withdrawals of one card within any
    10 minutes raises one alert per offending withdrawal; a straggler within grace counts."""
    app = eoflow.App("cards")
    withdrawals = app.topic("withdrawals", partitions=1, key_serializer="str")
    alerts = app.topic("alerts", partitions=1, key_serializer="str")
    recent = app.Table("recent", default=int).sliding(
        timedelta(minutes=10), grace=timedelta(minutes=1))

    @app.agent(withdrawals)
    async def watch(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for card, withdrawal in stream.items():
            recent[card] += 1
            if recent[card].current() > 3:
                await alerts.send(key=card, value=withdrawal["id"])

    noon = 1714564800.0
    async with TestDriver(app) as driver:
        for minute, wid in ((0, "w1"), (4, "w2"), (9, "w3"), (12, "w4"), (11.5, "w5"),
                            (13, "w6")):
            await driver.send("withdrawals", {"id": wid}, key="c-7",
                              timestamp=noon + 60 * minute)
        await driver.settle()
        # w4 at 12: [2,12] holds 4, 9, 12 · w5 at 11.5 (within grace): [1.5,11.5] holds
        # 4, 9, 11.5, and [2,12] now 4 · w6 at 13: [3,13] holds 4, 9, 11.5, 12, 13
        assert driver.values("alerts") == ["w6"]
