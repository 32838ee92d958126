"""Exactly once for the features users build around the guarantee (issues 11, 12).

``tests/harness/features_app.py`` runs take batches and a yielding agent with two sinks,
group_by through a repartition topic, a table, a tumbling window and a session window
with close and late hooks (event time from the input topic's timestamp_extractor), a
global table and a punctuator; ``features_oracle`` checks every one of them exactly (see
its docstring). The scenarios are the harness's: random ``kill -9``, a crash at every
fault point of the commit cycle, a zombie past its session, a restart as a new instance
with an empty data directory, and scaling 1 -> 3 -> 1 workers. Reproduce one with
``python -m tests.harness.scenarios NAME --app features --records N``.
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

RECORDS = 2000
SEED = 20261207


def _config(name: str, tmp_path: Path, broker: Any, **kwargs: Any) -> RunConfig:
    unique = f"e2e-feat-{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    defaults: dict[str, Any] = {"records": RECORDS, "seed": SEED, "drain_timeout": 60.0,
                                "app": "features"}
    return RunConfig(broker.bootstrap, tmp_path, unique, broker=broker, **{**defaults, **kwargs})


def _check(result: ScenarioResult) -> None:
    print(result.report())
    assert result.ok, result.report()
    assert result.oracle.records >= RECORDS


def test_features_under_random_kills(kafka_broker: Any, tmp_path: Path) -> None:
    result = asyncio.run(SCENARIOS["random_kills"](_config("random_kills", tmp_path,
                                                           kafka_broker)))
    _check(result)
    assert result.kills == 4


def test_features_crash_at_every_fault_point(kafka_broker: Any, tmp_path: Path) -> None:
    result = asyncio.run(fault_points(_config("fault_points", tmp_path, kafka_broker)))
    _check(result)
    assert result.faults_fired == list(FAULT_POINTS), result.report()


def test_features_zombie(kafka_broker: Any, tmp_path: Path) -> None:
    cfg = _config("zombie", tmp_path, kafka_broker, session_timeout=3.0,
                  transaction_timeout=10.0, rate=300.0)
    _check(asyncio.run(SCENARIOS["zombie"](cfg)))


def test_features_fresh_instance(kafka_broker: Any, tmp_path: Path) -> None:
    cfg = _config("fresh_instance", tmp_path, kafka_broker)
    _check(asyncio.run(SCENARIOS["fresh_instance"](cfg)))


def test_features_scale_out_and_in(kafka_broker: Any, tmp_path: Path) -> None:
    """1 -> 3 -> 1 workers: windows, sessions and punctuators change owners twice."""
    result = asyncio.run(SCENARIOS["scale_1_3_1"](_config("scale_1_3_1", tmp_path,
                                                          kafka_broker)))
    _check(result)
    assert result.rebalances >= 2, result.report()
