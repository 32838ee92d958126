"""Timers, crontabs, tasks and punctuators on the broker-less driver (issue 11.5)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

import eoflow
from eoflow._cron import Cron
from eoflow.errors import ConfigurationError
from eoflow.testing import ManualClock, TestDriver


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_cron_schedules() -> None:
    every_5 = Cron("*/5 * * * *")
    assert every_5.next_after(ts("2026-01-01T10:02:30")) == ts("2026-01-01T10:05:00")
    assert every_5.next_after(ts("2026-01-01T10:05:00")) == ts("2026-01-01T10:10:00")
    nightly = Cron("30 2 * * mon-fri")  # 2026-01-03 is a Saturday
    assert nightly.next_after(ts("2026-01-02T03:00:00")) == ts("2026-01-05T02:30:00")
    paris = Cron("0 9 * * *", timezone="Europe/Paris")
    assert paris.next_after(ts("2026-07-01T00:00:00")) == ts("2026-07-01T07:00:00")
    assert Cron("0 0 1 jan *").next_after(ts("2026-03-01T00:00:00")) == ts("2027-01-01T00:00")


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "*/0 * * * *", "a b c d e"])
def test_a_cron_that_does_not_parse_is_refused_at_declaration(bad: str) -> None:
    app = eoflow.App("c")
    with pytest.raises(ConfigurationError, match="cron"):
        app.crontab(bad)


def timer_app() -> tuple[eoflow.App, Any]:
    app = eoflow.App("timers")
    src = app.topic("in", partitions=2)
    out = app.topic("out", partitions=1)
    ticks = app.Table("ticks", default=int, partitions=2)

    @app.agent(src)
    async def relay(stream: eoflow.Stream[Any, Any]) -> None:
        async for value in stream:
            await out.send(value={"relayed": value})

    @app.timer(10)
    async def every_ten() -> None:
        await out.send(value="tick")

    @app.punctuate(src, every=10)
    async def count_ticks(partition: int) -> None:
        ticks[f"p{partition}"] += 1  # the partition's own table context
        await out.send(value={"punctuated": partition, "n": ticks[f"p{partition}"]})

    return app, ticks


async def test_a_timer_runs_every_interval_inside_the_transaction() -> None:
    app, _ = timer_app()
    async with TestDriver(app) as driver:
        await driver.advance(10)
        await driver.advance(10)
        assert driver.values("out").count("tick") == 2


async def test_a_punctuator_counts_per_partition_exactly_once_across_crashes() -> None:
    app, _ = timer_app()
    async with TestDriver(app) as driver:
        for _ in range(3):
            await driver.advance(10)
        await driver.send("in", 1, partition=0)
        await driver.crash(at="before_commit")
        for _ in range(2):
            await driver.advance(10)
        punctuations = [v for v in driver.values("out") if isinstance(v, dict)
                        and "punctuated" in v]
        table = driver.table("ticks")
        for p in (0, 1):
            ns = [v["n"] for v in punctuations if v["punctuated"] == p]
            # every committed run's effects together: the counter equals its outputs
            assert ns == list(range(1, len(ns) + 1))
            assert table.get(f"p{p}", 0) == len(ns)


async def test_a_timer_that_raises_aborts_its_interval_and_runs_again_next_time() -> None:
    app = eoflow.App("raise")
    app.topic("in", partitions=1)
    out = app.topic("out", partitions=1)
    calls: list[int] = []

    @app.agent(app.topics["in"])
    async def idle(stream: eoflow.Stream[Any, Any]) -> None:
        async for _ in stream:
            pass

    @app.timer(5)
    async def flaky() -> None:
        calls.append(1)
        await out.send(value=len(calls))
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    async with TestDriver(app) as driver:
        await driver.advance(5)
        await driver.advance(5)
        assert driver.values("out") == [2]  # the first run's send was aborted with it
        assert driver.worker is not None and driver.worker.committer is not None
        assert driver.worker.committer.aborts >= 1


async def test_crontab_and_task() -> None:
    app = eoflow.App("cron")
    out = app.topic("out", partitions=1)

    @app.agent(app.topic("in", partitions=1))
    async def idle(stream: eoflow.Stream[Any, Any]) -> None:
        async for _ in stream:
            pass

    @app.crontab("*/5 * * * *")
    async def five() -> None:
        await out.send(value="five")

    @app.task
    async def hello() -> None:
        await out.send(value="started")

    async with TestDriver(app, clock=ManualClock(ts("2026-01-01T10:02:00"))) as driver:
        await driver.advance(60)
        assert driver.values("out") == ["started"]
        await driver.advance(180)  # 10:06
        await driver.advance(240)  # 10:10
        assert driver.values("out") == ["started", "five", "five"]


async def test_timers_need_async_functions() -> None:
    app = eoflow.App("sync")
    with pytest.raises(ConfigurationError, match="async def"):
        app.timer(1)(lambda: None)


async def test_a_punctuator_and_a_record_that_open_the_same_interval_begin_it_once() -> None:
    # Both open the interval lazily; the producer's begin takes a round trip, so the two
    # used to interleave and begin the transaction twice (aiokafka: invalid transition
    # IN_TRANSACTION -> IN_TRANSACTION, and the worker stopped).
    app, _ = timer_app()
    async with TestDriver(app) as driver:
        for n in range(5):
            await driver.send("in", n, partition=n % 2)
            await driver.advance(10)
        relayed = [v for v in driver.values("out") if isinstance(v, dict) and "relayed" in v]
        assert [v["relayed"] for v in relayed] == list(range(5))
        assert driver.table("ticks") == {"p0": 5, "p1": 5}


async def test_a_timer_run_whose_interval_aborts_commits_none_of_its_sends() -> None:
    # A run slower than the barrier's budget: its interval aborts. Its later sends used
    # to go on into the next interval, committing half a run.
    app = eoflow.App("slow-timer")
    out = app.topic("out", partitions=1)

    @app.agent(app.topic("in", partitions=1))
    async def idle(stream: eoflow.Stream[Any, Any]) -> None:
        async for _ in stream:
            pass

    @app.timer(10)
    async def slow() -> None:
        await out.send(value="a")
        await asyncio.sleep(1.2)
        await out.send(value="b")

    async with TestDriver(app, transaction_timeout=1.0) as driver:
        driver.clock.advance(10)
        await asyncio.sleep(2.0)
        await driver.settle()
        assert driver.values("out") == []  # cancelled with its interval; next run in 10 s


async def test_a_task_that_never_returns_does_not_stop_the_timers() -> None:
    app = eoflow.App("looping-task")
    out = app.topic("out", partitions=1)

    @app.agent(app.topic("in", partitions=1))
    async def idle(stream: eoflow.Stream[Any, Any]) -> None:
        async for _ in stream:
            pass

    @app.task
    async def background() -> None:
        while True:
            await asyncio.sleep(0.01)

    @app.timer(10)
    async def tick() -> None:
        await out.send(value="tick")

    async with TestDriver(app) as driver:
        await driver.advance(10)
        assert driver.values("out") == ["tick"]


async def test_an_on_leader_task_runs_only_on_the_leader() -> None:
    from eoflow._app import TimerSpec
    from eoflow._runtime.timers import Timers
    from eoflow._stream import InFlight
    from eoflow._transport.base import TopicPartition

    ran: list[str] = []

    async def task() -> None:
        ran.append("task")

    async def admit() -> int:
        return in_flight.hold()

    in_flight = InFlight()
    for assigned, expected in (({TopicPartition("in", 1)}, []),
                               ({TopicPartition("in", 0)}, ["task"])):
        ran.clear()
        timers = Timers([TimerSpec("t", task, "task", on_leader=True)], clock=lambda: 0.0,
                        admit=admit, in_flight=in_flight, adopt=lambda run: None,
                        failed=lambda exc, fatal: None, assignment=lambda a=assigned: a,
                        leader_topic="in")
        await timers.run()
        assert ran == expected
