"""Static membership (docs/operations.md, "Running N workers"): a worker killed with
``kill -9`` and started again with the same instance id within ``session_timeout`` gets
its partitions back in the same group generation, and the other worker is not
rebalanced; one that stays away longer than the session timeout is rebalanced away.

Two ``apps.wordcount`` workers (4 partitions of each of its three topics, so six each),
isolated by ``EOFLOW_NAMESPACE``, with instance ids ``wc-a`` and ``wc-b``.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.workers import WorkerProc, Workers

pytestmark = pytest.mark.timeout(180)

SESSION_TIMEOUT = 12.0
ASSIGNED = re.compile(r"assigned (\d+) partitions \(generation (\d+)\)")


def assignments(worker: WorkerProc) -> list[tuple[int, int]]:
    """(partitions, generation) of every assignment in the worker's log, in order."""
    return [(int(n), int(g)) for n, g in ASSIGNED.findall(worker.log())]


def wait_for(what: str, check: Any, workers: list[WorkerProc], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        dead = [w for w in workers if not w.alive]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.instance_id}\n{w.tail()}" for w in workers)
            pytest.fail(f"{'a worker died' if dead else 'timed out'} waiting for {what}:\n{logs}")
        time.sleep(0.2)


def split_evenly(a: WorkerProc, b: WorkerProc) -> int | None:
    """The generation in which a and b hold six partitions each, if they do."""
    last_a, last_b = (assignments(a) or [None])[-1], (assignments(b) or [None])[-1]
    if last_a and last_b and last_a[1] == last_b[1] and last_a[0] == last_b[0] == 6:
        return last_a[1]
    return None


def test_a_worker_back_within_the_session_timeout_rebalances_no_one(
        kafka_broker: Any, tmp_path: Path) -> None:
    env = {"EO_BROKER_ADDR": kafka_broker.bootstrap,
           "EOFLOW_NAMESPACE": f"static{uuid.uuid4().hex[:6]}",
           "EOFLOW_SESSION_TIMEOUT": str(SESSION_TIMEOUT)}
    with Workers(tmp_path, env, app="apps.wordcount").running() as pool:
        a, b = pool.start("wc-a"), pool.start("wc-b")
        wait_for("an even split", lambda: split_evenly(a, b), [a, b])
        generation = split_evenly(a, b)
        seen_by_a = assignments(a)
        # a may have held every partition first and given half up when b joined
        # (it did once in CI): only what follows the even split counts
        log_before = len(a.log())

        pool.kill(b)
        time.sleep(2)
        b = pool.start("wc-b")
        wait_for("wc-b's assignment", lambda: assignments(b), [a, b])
        time.sleep(3)  # a rebalance of a would follow the rejoin within a heartbeat

        assert assignments(b) == [(6, generation)]
        assert assignments(a) == seen_by_a and "revoked" not in a.log()[log_before:], a.tail()

        pool.kill(b)  # and now past the session timeout: a takes b's partitions
        wait_for("wc-a to take every partition",
                 lambda: assignments(a)[-1][0] == 12, [a], timeout=SESSION_TIMEOUT + 30)
        assert assignments(a)[-1][1] > generation  # type: ignore[operator]
