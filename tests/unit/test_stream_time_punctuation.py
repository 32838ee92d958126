"""Punctuation on stream time: once per slice of event time a partition had events in,
inside the transaction of the event that moved stream time past it."""

from __future__ import annotations

import math
import random

import pytest

import eoflow
from eoflow.errors import ConfigurationError
from eoflow.testing import TestDriver

BASE = 1_700_000_000.0  # a whole multiple of every slice length used here


def punctuated_app(runs: list[tuple[int, float]], *, every: float = 10) -> eoflow.App:
    """Each stream-time punctuation of ``hits`` counts itself in table ``runs`` (in its
    partition's table context) and emits ``{"p", "until", "n": that count}``."""
    app = eoflow.App("flush")
    hits = app.topic("hits", partitions=2, key_serializer="str")
    flushes = app.topic("flushes", partitions=1)
    counted = app.Table("runs", default=int, partitions=2)

    @app.punctuate(hits, every=every, on="stream_time")
    async def flush(partition: int, until: float) -> None:
        runs.append((partition, until - BASE))
        counted[str(partition)] += 1  # this partition's table context: exactly once
        await flushes.send(value={"p": partition, "until": until - BASE,
                                  "n": counted[str(partition)]})

    return app


async def _hits(driver: TestDriver, partition: int, *times: float) -> None:
    for t in times:
        await driver.send("hits", {}, key="k", timestamp=BASE + t, partition=partition)
    await driver.settle()


def test_on_must_name_a_clock_and_the_function_takes_partition_and_until() -> None:
    app = eoflow.App("bad")
    hits = app.topic("hits")
    with pytest.raises(ConfigurationError, match="on is 'wall_clock' or 'stream_time'"):
        app.punctuate(hits, every=1, on="event_time")
    with pytest.raises(ConfigurationError, match=r"takes \(partition, until\)"):
        @app.punctuate(hits, every=1, on="stream_time")
        async def one(partition: int) -> None: ...


async def test_a_slice_is_punctuated_once_when_stream_time_reaches_its_end() -> None:
    runs: list[tuple[int, float]] = []
    app = punctuated_app(runs)
    async with TestDriver(app) as driver:
        await _hits(driver, 0, 1, 4, 9.999)
        assert runs == []
        await _hits(driver, 0, 10)  # the slice [0, 10) is over on partition 0
        assert runs == [(0, 10)]
        await _hits(driver, 1, 35)  # partition 1 has its own stream time
        await _hits(driver, 0, 31, 42)  # nothing in [10, 20) or [20, 30): no run for them
        assert runs == [(0, 10), (0, 20), (0, 40)]
        assert driver.values("flushes") == [{"p": 0, "until": 10, "n": 1},
                                            {"p": 0, "until": 20, "n": 2},
                                            {"p": 0, "until": 40, "n": 3}]


async def test_an_event_in_a_slice_already_punctuated_does_not_run_it_again() -> None:
    runs: list[tuple[int, float]] = []
    app = punctuated_app(runs)
    async with TestDriver(app) as driver:
        await _hits(driver, 0, 5, 12, 7, 25)  # 7 comes after [0, 10) was punctuated
        assert runs == [(0, 10), (0, 20)]


@pytest.mark.parametrize("point", ["before_offsets", "before_commit", "after_commit",
                                   "before_store_write"])
async def test_a_punctuation_and_its_writes_commit_exactly_once_across_a_crash(
        point: str) -> None:
    runs: list[tuple[int, float]] = []
    app = punctuated_app(runs)
    async with TestDriver(app) as driver:
        await _hits(driver, 1, 3, 6)
        await driver.send("hits", {}, key="k", timestamp=BASE + 14, partition=1)
        await driver.crash(at=point)
        await driver.settle()
        assert driver.values("flushes") == [{"p": 1, "until": 10, "n": 1}]
        assert driver.table("runs") == {"1": 1}


def _fold(events: list[tuple[int, float]], every: float) -> list[tuple[int, float, int]]:
    """The stream-time punctuation rules written out plainly: per partition, in order,
    ``(partition, until, runs so far)``."""
    runs: list[tuple[int, float, int]] = []
    stream: dict[int, float] = {}
    marked: dict[int, set[float]] = {}
    for p, t in events:
        end = (math.floor(t / every) + 1) * every
        if end > stream.get(p, -math.inf):  # the slice is still open: marked
            marked.setdefault(p, set()).add(end)
        stream[p] = max(stream.get(p, t), t)
        for until in sorted(u for u in marked.get(p, set()) if u <= stream[p]):
            marked[p].discard(until)
            runs.append((p, until, 1 + sum(1 for r in runs if r[0] == p)))
    return runs


@pytest.mark.parametrize("seed", range(3))
async def test_stream_time_punctuation_matches_its_rules_under_random_times_and_crashes(
        seed: int) -> None:
    rng = random.Random(seed)
    events: list[tuple[int, float]] = []
    now = 0.0
    for _ in range(200):
        now += rng.choice((0, 1, 2, 3, 7, 15))
        events.append((rng.choice((0, 1)), max(now - rng.choice((0, 0, 4, 12)), 0)))
    app = punctuated_app([])
    async with TestDriver(app) as driver:
        for i, (p, t) in enumerate(events):
            await driver.send("hits", {}, key="k", timestamp=BASE + t, partition=p)
            if i % 30 == 29:
                await driver.crash(at=rng.choice(["before_offsets", "before_commit",
                                                  "after_commit", "before_store_write", None]))
        await driver.settle()
        got = [(v["p"], v["until"], v["n"]) for v in driver.values("flushes")]
        want = _fold(events, 10)
        for p in (0, 1):  # one output partition: each input partition's runs in order
            assert [r for r in got if r[0] == p] == [r for r in want if r[0] == p]
