"""Exactly-once on a replicated three-broker cluster: the quick profile of the cluster
scenarios (``tests/harness/cluster_scenarios.py``).

Each test runs one scenario on the session's ``kafka_cluster`` (RF 3, min.insync.replicas
2): two ``eoflow worker`` processes killed with ``kill -9`` every few seconds while nodes
are killed, one quiescent cut checked for atomicity mid-run, then the oracle (exactly
once, order, aggregates, tables, cross-partition atomicity against the committed
offsets). Every node a test kills is back and in sync when it returns. Reproduce with
``python -m tests.harness.scenarios NAME --cluster --records N --seed S``; the network
faults need the harness's own cluster (fault proxies) and are not in this profile.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.run import RunConfig, ScenarioResult
from tests.harness.scenarios import SCENARIOS

pytestmark = pytest.mark.timeout(420)

RECORDS = 2000
SEED = 20240611


def _run(name: str, tmp_path: Path, cluster: Any, **kwargs: Any) -> ScenarioResult:
    unique = f"e2e-{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    cfg = RunConfig(cluster.bootstrap, tmp_path, unique, cluster=cluster,
                    **{"records": RECORDS, "seed": SEED, **kwargs})
    result = asyncio.run(SCENARIOS[name](cfg))
    print(result.report())
    return result


def _assert_ok(result: ScenarioResult, broker_kills: int) -> None:
    assert result.ok, result.report()
    assert result.oracle.records >= RECORDS
    assert result.broker_kills == broker_kills
    assert result.cuts == 1, result.report()
    assert result.kills > 2, result.report()  # the workers' chaos ran (the cut kills two)


def test_transaction_coordinator_killed(kafka_cluster: Any, tmp_path: Path) -> None:
    """The coordinator of a worker's transactions dies mid-run: the transaction state
    moves to another node, in-flight transactions finish or abort there."""
    _assert_ok(_run("txn_coordinator_kill", tmp_path, kafka_cluster), broker_kills=1)


def test_two_of_three_nodes_down(kafka_cluster: Any, tmp_path: Path) -> None:
    """Below min.insync.replicas and without a controller quorum nothing can commit:
    the workers abort or wait, and carry on exactly once when the nodes are back."""
    _assert_ok(_run("isr_loss", tmp_path, kafka_cluster), broker_kills=2)
