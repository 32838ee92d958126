"""``GET /tables/{table}/{key}`` answers from committed state only, and from the owner."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp

from eoflow._transport.batching import default_partition
from eoflow._transport.memory import MemoryBroker, MemoryTransport
from eoflow.testing import TestDriver, running

from .helpers import get, keyed_app, until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_value_of_an_open_or_aborted_interval_is_never_served() -> None:
    """The write of an interval sits in its overlay; the query reads the store."""
    app, hooks = keyed_app()
    inside, release = asyncio.Event(), asyncio.Event()
    retrying, release_retry = asyncio.Event(), asyncio.Event()
    fail = {"once": True}

    async def after_write(value: Any) -> None:
        if value != "new":
            return
        if fail.pop("once", False):
            inside.set()
            await release.wait()
            raise RuntimeError("the interval that wrote 'new' aborts")
        retrying.set()
        await release_retry.wait()

    hooks["after_write"] = after_write
    async with TestDriver(app, web_enabled=True, web_port=0) as driver:
        assert driver.worker is not None and driver.worker.web_url is not None
        url = f"{driver.worker.web_url}/tables/latest/alice"
        await driver.send("in", {"v": "old"}, key=b"alice")
        await driver.settle()
        assert await get(url) == (200, {"table": "latest", "key": "alice", "value": "old",
                                        "partition": 1, "served_by": driver.worker.web_url})

        await driver.send("in", {"v": "new"}, key=b"alice")
        await asyncio.wait_for(inside.wait(), 5)  # 'new' is in the open interval's overlay
        assert (await get(url))[1]["value"] == "old"
        release.set()  # the agent raises: the interval aborts
        await asyncio.wait_for(retrying.wait(), 5)  # aborted; the retry wrote 'new' again
        assert driver.worker.committer is not None and driver.worker.committer.aborts == 1
        assert (await get(url))[1]["value"] == "old"
        release_retry.set()
        await driver.settle()  # the retry commits 'new'
        assert (await get(url))[1]["value"] == "new"


async def test_a_crash_before_commit_never_serves_the_dead_interval_value() -> None:
    """kill -9 after the changelog flush: the restored store has only committed writes."""
    app, hooks = keyed_app()
    attempts: list[int] = []

    async def after_write(value: Any) -> None:
        attempts.append(1)

    hooks["after_write"] = after_write
    seen: list[Any] = []
    port = free_port()

    async def watch(stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(
                            f"http://127.0.0.1:{port}/tables/latest/alice") as response:
                        if response.status == 200:
                            seen.append((await response.json())["value"])
                except aiohttp.ClientError:
                    pass  # between the crash and the restart
                await asyncio.sleep(0.002)

    async with TestDriver(app, web_enabled=True, web_port=port) as driver:
        await driver.send("in", {"v": "old"}, key=b"alice")
        await driver.settle()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        await until(lambda: seen, "a first answer")
        await driver.send("in", {"v": "new"}, key=b"alice")
        await driver.crash(at="before_commit")  # 'new' was flushed, never committed
        await driver.settle()
        await until(lambda: seen[-1] == "new", "the committed retry")
        stop.set()
        await watcher
    assert len(attempts) == 3  # old, the dead try of new, the committed retry
    first_new = seen.index("new")
    assert set(seen[:first_new]) == {"old"} and set(seen[first_new:]) == {"new"}


async def test_a_query_is_proxied_to_the_worker_that_owns_the_key(tmp_path: Path) -> None:
    broker = MemoryBroker()
    options: dict[str, Any] = dict(partitions=4, commit_interval=0.02, web_enabled=True,
                                   web_port=0)
    app, _ = keyed_app(tmp_path / "one", **options)
    twin, _ = keyed_app(tmp_path / "two", app_id=app.id, **options)
    async with running(app, transport=MemoryTransport(broker)) as one, \
            running(twin, transport=MemoryTransport(broker)) as two:
        await until(lambda: len(one.consumer.assignment()) == 4 // 2  # type: ignore[union-attr]
                    and one.rebalance.settled and two.rebalance.settled,  # type: ignore[union-attr]
                    "both workers to own two partitions")
        keys = [f"user-{i}" for i in range(12)]
        for i, key in enumerate(keys):
            broker.append(None, 0, "in", default_partition(key.encode(), 4),
                          [(key.encode(), b'{"v": %d}' % i, None, ())])
        tables = [one.tables, two.tables]
        await until(lambda: sum(len(list(t.items("latest", p)))  # type: ignore[union-attr]
                                for t in tables for p in t.partitions("latest")) == 12,  # type: ignore[union-attr]
                    "every key committed")
        await asyncio.sleep(0.1)
        served = set()
        for i, key in enumerate(keys):
            for worker in (one, two):
                status, body = await get(f"{worker.web_url}/tables/latest/{key}")
                assert status == 200, body
                assert body["value"] == i
                served.add(body["served_by"])
        assert served == {one.web_url, two.web_url}
        status, body = await get(f"{one.web_url}/tables/latest/nobody")
        assert status == 404 and "not found" in body["error"]
        status, body = await get(f"{one.web_url}/tables/nope/x")
        assert status == 404 and body["tables"] == ["latest"]
