"""``/metrics``, ``/health``, ``/ready``, ``/status``, ``/`` and ``@app.page`` on the
broker-less driver."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eoflow._runtime.worker import Worker
from eoflow._state.restore import ChangelogReader
from eoflow._transport.memory import MemoryBroker, MemoryTransport
from eoflow.errors import ConfigurationError
from eoflow.testing import TestDriver, running

from .helpers import get, keyed_app, until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_committed_records_commits_lag_and_tables() -> None:
    app, _ = keyed_app()
    async with TestDriver(app, web_enabled=True, web_port=0) as driver:
        assert driver.worker is not None
        for i in range(20):
            await driver.send("in", {"v": i}, key=f"k{i % 5}".encode())
        await driver.settle()
        driver.broker.append(None, 0, "in", 0, [(b"k0", b"not json", None, ())])
        await driver.settle()
        status, text = await get(f"{driver.worker.web_url}/metrics")
    assert status == 200
    found = samples(text)
    assert found[("eoflow_records_in_total", (("topic", "in"),))] == 21
    assert found[("eoflow_records_out_total", ((("topic", app.settings.dlq_topic)),))] == 1
    assert found[("eoflow_dead_letters_total", ())] == 1
    assert found[("eoflow_commits_total", ())] >= 2
    assert found[("eoflow_aborts_total", ())] == 0
    assert found[("eoflow_rebalances_total", ())] == 1
    assert found[("eoflow_commit_seconds_count", ())] >= 2
    assert found[("eoflow_interval_records_sum", ())] == 21
    lags = {k: v for k, v in found.items() if k[0] == "eoflow_consumer_lag"}
    assert len(lags) == 2 and set(lags.values()) == {0}
    keys = sum(v for k, v in found.items() if k[0] == "eoflow_table_keys")
    assert keys == 5
    assert found[("eoflow_ready", ())] == 1


async def test_late_events_of_a_windowed_table_are_counted() -> None:
    import eoflow

    app = eoflow.App("late-metric")
    clicks = app.topic("clicks", partitions=1, key_serializer="str")
    views = app.Table("views", default=int, partitions=1).tumbling(10)

    @app.agent(clicks)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for user, _ in stream.items():
            views[user] += 1

    async with TestDriver(app, web_enabled=True, web_port=0) as driver:
        assert driver.worker is not None
        for t in (100.0, 125.0, 101.0, 102.0):  # the last two: their window closed at 110
            await driver.send("clicks", {}, key="ann", timestamp=1_700_000_000 + t)
        await driver.settle()
        _, text = await get(f"{driver.worker.web_url}/metrics")
    assert samples(text)[("eoflow_late_events_total", (("table", "views"),))] == 2


async def test_two_workers_in_one_process_keep_their_own_registries() -> None:
    first, _ = keyed_app()
    second, _ = keyed_app()
    async with TestDriver(first, web_enabled=True, web_port=0) as one, \
            TestDriver(second, web_enabled=True, web_port=0) as two:
        assert one.worker is not None and two.worker is not None
        await one.send("in", {"v": 1}, key=b"a")
        await one.settle()
        _, text_one = await get(f"{one.worker.web_url}/metrics")
        _, text_two = await get(f"{two.worker.web_url}/metrics")
    assert samples(text_one)[("eoflow_records_in_total", (("topic", "in"),))] == 1
    assert ("eoflow_records_in_total", (("topic", "in"),)) not in samples(text_two)


class _GatedTransport(MemoryTransport):
    """Changelog reads wait for ``gate``: a restore that takes as long as the test says."""

    def __init__(self, broker: MemoryBroker, gate: asyncio.Event) -> None:
        super().__init__(broker)
        self.gate = gate

    def changelog_reader(self) -> Any:
        inner, gate = super().changelog_reader(), self.gate

        class Gated:
            async def __aenter__(self) -> ChangelogReader:
                await gate.wait()
                return await inner.__aenter__()  # type: ignore[no-any-return]

            async def __aexit__(self, *exc: object) -> None:
                await inner.__aexit__(*exc)

        return Gated()


async def test_ready_only_after_the_restore_health_while_the_loop_turns(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = MemoryBroker()
    app, _ = keyed_app(tmp_path, web_enabled=True, web_port=0)
    gate = asyncio.Event()
    worker = Worker(app, transport=_GatedTransport(broker, gate))
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: worker.rebalance is not None and worker.rebalance.rebalances,
                    "the assignment")
        status, body = await get(f"{worker.web_url}/ready")
        assert (status, body["ready"]) == (503, False)  # assigned, still restoring
        assert body["assigned"] == ["in[0]", "in[1]"]
        status, body = await get(f"{worker.web_url}/health")
        assert (status, body["healthy"]) == (200, True)
        gate.set()
        await until(lambda: worker.rebalance is not None and worker.rebalance.settled,
                    "the restore")
        assert (await get(f"{worker.web_url}/ready"))[0] == 200
        # A stuck control loop: seen from /health, its last turn is long ago. (Moving
        # last_tick back raced with the loop, which sets it again every few milliseconds.)
        from eoflow._web import server

        later = time.monotonic() + 10 * worker.settings.transaction_timeout
        monkeypatch.setattr(server, "time", SimpleNamespace(monotonic=lambda: later))
        status, body = await get(f"{worker.web_url}/health")
        assert status == 503 and "has not turned" in body["status"]
    finally:
        worker.stop()
        await task


async def test_status_json_html_page_and_app_pages() -> None:
    app, _ = keyed_app()

    @app.page("/hello/{name}")
    async def hello(request: Any) -> dict[str, str]:
        return {"hello": request.match_info["name"]}

    @app.page("/plain")
    def plain(request: Any) -> str:
        return "just text"

    async with TestDriver(app, web_enabled=True, web_port=0) as driver:
        assert driver.worker is not None
        url = driver.worker.web_url
        await driver.send("in", {"v": 1}, key=b"a")
        await driver.settle()
        status, body = await get(f"{url}/status")
        assert status == 200 and body["app"] == app.id and body["ready"] is True
        assert [(p["topic"], p["lag"]) for p in body["partitions"]] == [("in", 0), ("in", 0)]
        assert body["members"] == {url: ["in[0]", "in[1]"]}
        status, page = await get(f"{url}/")
        assert status == 200 and "<title>eoflow" in page and app.id in page
        assert await get(f"{url}/hello/eve") == (200, {"hello": "eve"})
        assert await get(f"{url}/plain") == (200, "just text")


async def test_a_port_in_use_stops_the_start_naming_it() -> None:
    app, _ = keyed_app()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = app.settings.with_overrides(web_enabled=True, web_port=port)
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port} is in use"):
            async with running(app, settings, transport=MemoryTransport(MemoryBroker())):
                pass


