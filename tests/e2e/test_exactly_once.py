"""Exactly-once under faults, end to end: the quick profile of ``tests/harness``.

Every test runs one named scenario (real ``eoflow worker`` processes, a real broker) with a
few thousand inputs and asserts that the oracle found no duplicate, loss, reordering,
aggregate or table mismatch, and that the fault really happened. Reproduce one with
``python -m tests.harness.scenarios NAME --records N --seed S``. The broker-restart test
restarts the session broker, so it is last.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.run import RunConfig, ScenarioResult
from tests.harness.scenarios import FAULT_POINTS, SCENARIOS, fault_points

pytestmark = pytest.mark.timeout(240)

RECORDS = 3000
SEED = 20240611


def _config(name: str, tmp_path: Path, broker: Any, **kwargs: Any) -> RunConfig:
    unique = f"e2e-{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    defaults: dict[str, Any] = {"records": RECORDS, "seed": SEED, "drain_timeout": 60.0}
    return RunConfig(broker.bootstrap, tmp_path, unique, broker=broker, **{**defaults, **kwargs})


def _run(name: str, tmp_path: Path, broker: Any, **kwargs: Any) -> ScenarioResult:
    result = asyncio.run(SCENARIOS[name](_config(name, tmp_path, broker, **kwargs)))
    print(result.report())
    return result


def _assert_ok(result: ScenarioResult, records: int = RECORDS) -> None:
    assert result.ok, result.report()
    assert result.oracle.records >= records


def test_random_kills(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("random_kills", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.kills == 4


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_fault_point(point: str, kafka_broker: Any, tmp_path: Path) -> None:
    cfg = _config(f"fault-{point}", tmp_path, kafka_broker, records=2000)
    result = asyncio.run(fault_points(cfg, (point,)))
    print(result.report())
    assert result.faults_fired == [point], result.report()
    assert result.ok, result.report()


def test_scale_1_3_1(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("scale_1_3_1", tmp_path, kafka_broker, session_timeout=3.0, rate=400.0)
    _assert_ok(result)
    assert result.rebalances >= 4  # w1 alone, +w2/w3 (3 members), w1 alone again


def test_zombie(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("zombie", tmp_path, kafka_broker, session_timeout=3.0,
                  transaction_timeout=10.0, rate=300.0)
    _assert_ok(result)


def test_slow_agent(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("slow_agent", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.oracle.dead_lettered == 1  # the always-slow input; the slow-once one passes


def test_poison(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("poison", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.oracle.dead_lettered == 10


def test_too_large(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("too_large", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.oracle.dead_lettered == 2


def test_fresh_instance_after_a_crash_between_flush_and_offsets(
        kafka_broker: Any, tmp_path: Path) -> None:
    """Issue 17.1: the dead worker's transaction stays open (new instance id), the
    partitions move twice; tables must equal the fold (a wiped store would not)."""
    result = _run("fresh_instance", tmp_path, kafka_broker, records=2000, rate=300.0,
                  session_timeout=3.0, transaction_timeout=15.0)
    _assert_ok(result, records=2000)
    assert result.faults_fired == ["before_offsets"]
    assert result.rebalances >= 3


def test_sends_from_spawned_tasks_under_kills(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("spawned_sends", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.kills == 3


def test_table_writes_outside_events_under_kills(kafka_broker: Any, tmp_path: Path) -> None:
    result = _run("outside_writes", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.kills == 3


def test_broker_restart(kafka_broker: Any, tmp_path: Path) -> None:
    """Last: restarts the session broker (the others tolerate it, but need not)."""
    result = _run("broker_restart", tmp_path, kafka_broker)
    _assert_ok(result)
    assert result.broker_restarts == 1
