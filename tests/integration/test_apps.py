"""The example apps in apps/ end to end: each in a real worker on the session broker, fed
with real records, its outputs read back as a ``read_committed`` consumer sees them.

The four workers run at once, in this event loop, to keep the wall time down. Each app
is imported afresh under ``EOFLOW_NAMESPACE`` (read when the App is declared): its id
and every topic get a unique ``apps<hex>.`` prefix, so the run touches none of the
apps' real topics, nor another run's. The exact logic (windows, late events, crashes)
is pinned by tests/unit/apps on the broker-less driver; this checks the apps work on
Kafka as the README tells users to run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from eoflow.testing import (
    create_topics,
    delete_topics,
    produce,
    read_committed,
    running,
    wait_for_records,
)

APPS = Path(__file__).resolve().parents[2] / "apps"
NOON = datetime(2024, 5, 1, 12, tzinfo=UTC)
H = 1_699_999_200  # an hour boundary


@pytest.fixture
def namespace() -> str:
    return f"apps{uuid.uuid4().hex[:8]}"


@pytest.fixture
def load(namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``load("pageviews")``: a fresh copy of apps/pageviews.py, declared in the namespace."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        module_name = f"_{namespace}_{name}"
        spec = importlib.util.spec_from_file_location(module_name, APPS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # Record annotations resolve through it
        loaded.append(module_name)
        with monkeypatch.context() as env:
            env.setenv("EOFLOW_NAMESPACE", namespace)
            spec.loader.exec_module(module)
        return module

    yield load
    for module_name in loaded:
        sys.modules.pop(module_name, None)


def values(records: list[Any]) -> list[Any]:
    return [json.loads(r.value) for r in records]


async def feed(bootstrap: str, topic: Any, records: list[tuple[Any, Any]],
               timestamps: list[float] | None = None) -> None:
    """Produce Python keys and values through the topic's own serializers."""
    await produce(bootstrap, topic.name, [topic.encode(k, v) for k, v in records],
                  timestamps_ms=None if timestamps is None
                  else [round(t * 1000) for t in timestamps])


# Each app: ``feed_*`` produces its inputs and waits until its outputs are there;
# ``check_*`` runs once every worker stopped (final commit done) and compares everything
# committed with what is expected, so a duplicate committed late would show.


async def feed_pageviews(bootstrap: str, m: ModuleType) -> None:
    def view(user: str, second: int) -> Any:
        return m.PageView(user=user, page="/", viewed_at=datetime.fromtimestamp(
            NOON.timestamp() + second, UTC))

    # One key, so one source partition: the views reach the repartition topic in order.
    await feed(bootstrap, m.page_views, [("collector", view(u, s)) for u, s in [
        ("ann", 5), ("bob", 20), ("ann", 30), ("ann", 72), ("bob", 75), ("ann", 40)]])
    await wait_for_records(bootstrap, m.views_per_minute.name, 2)
    await wait_for_records(bootstrap, m.late_views.name, 1)


async def check_pageviews(bootstrap: str, m: ModuleType) -> None:
    finals = await read_committed(bootstrap, m.views_per_minute.name)
    minute = {"start": "2024-05-01T12:00:00+00:00", "end": "2024-05-01T12:01:00+00:00"}
    assert sorted(values(finals), key=lambda v: v["user"]) == [
        {"user": "ann", **minute, "views": 2}, {"user": "bob", **minute, "views": 1}]
    late = await read_committed(bootstrap, m.late_views.name)
    assert [v["viewed_at"] for v in values(late)] == ["2024-05-01T12:00:40+00:00"]


async def feed_withdrawals(bootstrap: str, m: ModuleType) -> None:
    rows = [("ann", "se", 100.0, 1), ("bob", "se", 25.5, 2), ("ann", "no", 10.0, 3),
            ("ann", "se", 1.0, 21)]  # the last closes se's first 10 s (grace 10)
    await feed(bootstrap, m.withdrawals_topic,
               [(u, m.Withdrawal(user=u, country=c, amount=a)) for u, c, a, _ in rows],
               [H + s for *_, s in rows])
    await wait_for_records(bootstrap, m.country_totals.name, 1)


async def check_withdrawals(bootstrap: str, m: ModuleType) -> None:
    assert values(await read_committed(bootstrap, m.country_totals.name)) == [
        {"country": "se", "start": "2023-11-14T22:00:00+00:00",
         "end": "2023-11-14T22:00:10+00:00", "total": 125.5}]


async def feed_tableofset(bootstrap: str, m: ModuleType) -> None:
    # Joins and leaves are two topics with no order between them: one after the other.
    await feed(bootstrap, m.joining_topic, [("paris", "ann"), ("paris", "bob")])
    await wait_for_records(bootstrap, m.people_at.name, 2)
    await feed(bootstrap, m.leaving_topic, [("paris", "ann")])
    await wait_for_records(bootstrap, m.people_at.name, 3)


async def check_tableofset(bootstrap: str, m: ModuleType) -> None:
    changes = await read_committed(bootstrap, m.people_at.name)
    assert [(r.key, json.loads(r.value)) for r in changes] == [
        (b"paris", ["ann"]), (b"paris", ["ann", "bob"]), (b"paris", ["bob"])]


async def feed_leader(bootstrap: str, m: ModuleType) -> None:
    await wait_for_records(bootstrap, m.greetings.name, 2)  # two timer runs, 2 s apart


async def check_leader(bootstrap: str, m: ModuleType) -> None:
    said = [r.value.decode() for r in await read_committed(bootstrap, f"{m.app.id}-say")]
    heard = Counter(r.value.decode() for r in await read_committed(bootstrap,
                                                                    m.greetings.name))
    # Each greeting heard once. The last one may have committed with the final interval
    # before say had it.
    assert len(heard) >= 2 and set(heard.values()) == {1}
    assert set(heard) <= {f"heard {json.loads(s)}" for s in said}


CHECKS = {"pageviews": (feed_pageviews, check_pageviews),
          "withdrawals": (feed_withdrawals, check_withdrawals),
          "tableofset": (feed_tableofset, check_tableofset),
          "leader": (feed_leader, check_leader)}


@pytest.mark.timeout(180)
async def test_the_example_apps_on_a_real_broker(kafka_bootstrap: str, load: Any,
                                                 tmp_path: Path) -> None:
    modules = {name: load(name) for name in CHECKS}
    try:
        async with contextlib.AsyncExitStack() as stack:
            for name, m in modules.items():
                settings = m.app.settings.with_overrides(
                    broker=f"kafka://{kafka_bootstrap}", datadir=tmp_path / name)
                # Inputs stamped in 2023 (withdrawals) pass their time on to outputs: keep
                # them from the shared broker's retention check (every 5 min, 7 days).
                await create_topics(
                    kafka_bootstrap,
                    {n: t.partitions or settings.topic_partitions
                     for n, t in m.app.topics.items()},
                    {n: {**t.config, "retention.ms": "-1"} for n, t in m.app.topics.items()})
                await stack.enter_async_context(running(m.app, settings, ready_timeout=60))
            await asyncio.gather(*(CHECKS[name][0](kafka_bootstrap, m)
                                   for name, m in modules.items()))
        for name, m in modules.items():
            await CHECKS[name][1](kafka_bootstrap, m)
            assert await read_committed(kafka_bootstrap, m.app.settings.dlq_topic) == []
    finally:
        for m in modules.values():
            settings = m.app.settings
            with contextlib.suppress(Exception):  # cleanup only
                await delete_topics(kafka_bootstrap, [
                    *m.app.topics, settings.dlq_topic,
                    *(settings.changelog_topic(t) for t in m.app.tables)])
