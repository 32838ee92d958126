from __future__ import annotations

import pytest

from eoflow._runtime.lifecycle import IllegalTransition, IntervalState, Lifecycle, WorkerState


def test_worker_lifecycle_happy_path() -> None:
    worker = Lifecycle.worker()
    for state in (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING,
                  WorkerState.STOPPED):
        worker.to(state)
    assert worker.is_(WorkerState.STOPPED)


@pytest.mark.parametrize(("start", "target"), [
    (WorkerState.INIT, WorkerState.RUNNING),
    (WorkerState.STOPPED, WorkerState.RUNNING),
    (WorkerState.FAILED, WorkerState.RUNNING),
])
def test_worker_refuses_illegal_transitions(start: WorkerState, target: WorkerState) -> None:
    worker = Lifecycle.worker()
    worker.state = start
    with pytest.raises(IllegalTransition, match=f"{start.name} -> {target.name}"):
        worker.to(target)


def test_interval_commit_and_abort_paths() -> None:
    interval = Lifecycle.interval()
    interval.to(IntervalState.OPEN)
    interval.to(IntervalState.COMMITTING)
    interval.to(IntervalState.IDLE)
    interval.to(IntervalState.OPEN)
    interval.to(IntervalState.ABORTING)
    interval.to(IntervalState.IDLE)
    with pytest.raises(IllegalTransition):
        interval.to(IntervalState.COMMITTING)  # nothing open to commit
