"""Commits keep the cadence of ``commit_interval``, counted from the start of the last one.

Counting from its end made every interval last ``commit_interval`` plus the commit's own
round trips, so an output waited for up to two commits' worth on top of the interval (p99
latency 1.32 times a 100 ms interval, docs/benchmarks.md). A commit slower than the interval
must still leave the next one time to process events, or commits come back to back.
"""

from __future__ import annotations

import pytest

from eoflow._runtime.worker import MIN_OPEN_SHARE, next_commit_due


def test_the_next_commit_is_due_one_interval_after_the_last_one_began() -> None:
    # The commit began at 10.0 and took 20 ms: due at 10.1, not 10.12.
    assert next_commit_due(began=10.0, ended=10.02, interval=0.1) == pytest.approx(10.1)


def test_a_commit_slower_than_the_interval_still_leaves_the_next_one_open_a_while() -> None:
    # Began at 10.0, ended at 10.3 (a broker hiccup): the next is not due at once.
    due = next_commit_due(began=10.0, ended=10.3, interval=0.1)
    assert due == pytest.approx(10.3 + MIN_OPEN_SHARE * 0.1)
    assert due > 10.3


def test_the_first_interval_lasts_a_whole_interval() -> None:
    assert next_commit_due(began=None, ended=5.0, interval=1.0) == pytest.approx(6.0)
