"""The broker-less test driver, as users use it: apps/wordcount.py without Kafka."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

import eoflow
from eoflow._faults import POINTS
from eoflow.errors import ConfigurationError
from eoflow.testing import TestDriver

LINES = ["the quick brown fox", "jumps over the lazy dog", "the fox and the dog"]


def wordcount() -> eoflow.App:
    from apps import wordcount

    return wordcount.app


def expected(lines: list[str]) -> dict[str, int]:
    return dict(collections.Counter(w for line in lines for w in line.split()))


async def test_wordcount_runs_without_a_broker_in_milliseconds() -> None:
    started = time.monotonic()
    async with TestDriver(wordcount()) as driver:
        for line in LINES:
            await driver.send("lines", line)
        await driver.settle()
        assert driver.table("counts") == expected(LINES)
        finals = {o.key: o.value for o in driver.outputs("word-counts")}
        assert finals == expected(LINES)
        assert driver.dead_letters() == []
    assert time.monotonic() - started < 5  # typically ~0.2 s; a generous bound for CI


@pytest.mark.parametrize("point", [p for p in POINTS if p != "during_restore"])
async def test_a_crash_at_any_point_keeps_every_count_exact(point: str) -> None:
    async with TestDriver(wordcount()) as driver:
        await driver.send("lines", LINES[0])
        await driver.settle()
        await driver.send("lines", LINES[1])
        await driver.crash(at=point)
        await driver.send("lines", LINES[2])
        await driver.settle()
        assert driver.crashes == 1
        assert driver.table("counts") == expected(LINES)
        # Every word's running counts appear once each: no output of an aborted
        # interval is visible, none is missing.
        per_word: dict[str, list[int]] = collections.defaultdict(list)
        for o in driver.outputs("word-counts"):
            per_word[o.key].append(o.value)
        assert {w: sorted(ns) for w, ns in per_word.items()} == {
            w: list(range(1, n + 1)) for w, n in expected(LINES).items()}


async def test_a_crash_during_restore_resumes_the_restore() -> None:
    async with TestDriver(wordcount()) as driver:
        for line in LINES:
            await driver.send("lines", line)
        await driver.settle()
        await driver.crash(at="during_restore")
        assert driver.crashes == 2  # the worker, then its restart in the middle of restoring
        await driver.send("lines", "the end")
        await driver.settle()
        assert driver.table("counts") == expected([*LINES, "the end"])


async def test_a_restart_on_a_new_machine_restores_the_tables() -> None:
    async with TestDriver(wordcount()) as driver:
        await driver.send("lines", LINES[0])
        await driver.settle()
        await driver.crash(wipe_stores=True)
        await driver.send("lines", LINES[1])
        await driver.settle()
        assert driver.table("counts") == expected(LINES[:2])


async def test_sending_to_a_topic_the_app_does_not_declare_is_refused() -> None:
    async with TestDriver(wordcount()) as driver:
        with pytest.raises(ConfigurationError, match="'sentences' is not declared"):
            await driver.send("sentences", "the end")


async def test_undecodable_input_is_dead_lettered_with_its_coordinates() -> None:
    app = eoflow.App("dl")
    numbers = app.topic("numbers", partitions=1, value_serializer="json")
    out = app.topic("doubled", partitions=1)

    @app.agent(numbers)
    async def double(stream: eoflow.Stream[Any, Any]) -> None:
        async for n in stream:
            await out.send(value=n * 2)

    async with TestDriver(app) as driver:
        await driver.send("numbers", 1)
        driver.broker.append(None, 0, "numbers", 0, [(None, b"{not json", None, ())])
        await driver.send("numbers", 3)
        await driver.settle()
        assert driver.values("doubled") == [2, 6]
        [dead] = driver.dead_letters()
        assert dead.value == b"{not json"
        assert dict(dead.headers)["eoflow.offset"] == b"1"


async def test_a_backlog_with_many_poison_records_dead_letters_them_all() -> None:
    # Each poison record aborts its interval max_retries times; with the whole backlog
    # handed out at once, no interval commits in between. Those aborts are progress (each
    # counts a failure against a record), so they must not add up to "20 intervals in a
    # row aborted; stopping".
    app = eoflow.App("backlog")
    src = app.topic("in", partitions=1)
    out = app.topic("out", partitions=1)

    @app.agent(src)
    async def check(stream: eoflow.Stream[Any, dict[str, Any]]) -> None:
        async for value in stream:
            if value.get("bad"):
                raise ValueError(f"bad record {value['id']}")
            await out.send(value=value["id"])

    async with TestDriver(app, max_retries=3) as driver:
        for i in range(300):
            await driver.send("in", {"id": i, "bad": i % 20 == 19})
        await driver.settle(timeout=60)
        assert len(driver.dead_letters()) == 15
        assert driver.values("out") == [i for i in range(300) if i % 20 != 19]


async def test_a_new_instance_waits_out_the_dead_ones_transaction() -> None:
    """The dead worker's transaction holds changelog records and nothing can abort it but
    the broker's transaction timeout; the new instance (another id) waits, then goes on,
    and every count is exact (issue 17.1 without a broker)."""
    app = wordcount()
    async with TestDriver(app, transaction_timeout=1.0, commit_interval=0.02) as driver:
        await driver.send("lines", LINES[0])
        await driver.settle()
        for word in LINES[1].split():  # straight to the counting side: table writes
            await driver.send("wordcount-count-word-repartition", word, key=word)
        started = time.monotonic()
        await driver.crash(at="before_offsets", new_instance=True)
        # the dead one's transaction was aborted by its timeout meanwhile; the new
        # instance may have begun its own already (it failed CI once, under load)
        own = f"{driver.settings.app_id}-{driver.settings.instance_id}"
        assert [t for t in driver.broker.open_transactions() if t != own] == []
        assert time.monotonic() - started >= 0.9
        await driver.send("lines", LINES[2])
        await driver.settle(timeout=15)
        assert driver.table("counts") == expected(LINES)


async def test_faust_style_test_context_feeds_one_agent_and_keeps_its_results() -> None:
    app = eoflow.App("adder")
    numbers = app.topic("numbers", partitions=1)
    sums = app.topic("sums", partitions=1)

    @app.agent(numbers, sink=[sums])
    async def add(stream: eoflow.Stream[Any, dict[str, int]]) -> Any:
        async for pair in stream:
            yield pair["a"] + pair["b"]

    async with add.test_context() as agent:
        event = await agent.put({"a": 4, "b": 4})
        assert agent.results[event.offset] == [8]
        event = await agent.put({"a": 1, "b": 2})
        assert agent.results[event.offset] == [3]
        assert agent.driver.values("sums") == [8, 3]
    assert app.agents[add.spec.name].sink == (sums,)  # the recorder is gone afterwards


async def test_test_context_on_a_topic_of_several_partitions_keeps_inputs_apart() -> None:
    app = eoflow.App("doubler")
    numbers = app.topic("numbers", partitions=4, key_serializer="str")

    @app.agent(numbers)
    async def double(stream: eoflow.Stream[str, int]) -> Any:
        async for n in stream:
            yield 2 * n

    async with double.test_context() as agent:
        first = await agent.put(1, key="y")
        second = await agent.put(2, key="x")
        assert (first.value, second.value) == (1, 2)
        assert agent.results == {0: [2], 1: [4]}
        elsewhere = await agent.put(3, key="x", partition=2)
        assert agent.results_at[(2, elsewhere.offset)] == [6]
        assert agent.results == {0: [2], 1: [4]}


async def test_the_pytest_fixture_starts_and_stops_drivers(eoflow_driver: Any) -> None:
    driver = await eoflow_driver(wordcount())
    await driver.send("lines", "hello hello")
    await driver.settle()
    assert driver.table("counts") == {"hello": 2}
