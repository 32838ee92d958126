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


def test_interval_commit_path() -> None:
    interval = Lifecycle.interval()
    for state in (IntervalState.OPEN, IntervalState.COMMITTING, IntervalState.APPLYING,
                  IntervalState.DONE):
        interval.to(state)
    with pytest.raises(IllegalTransition):
        interval.to(IntervalState.OPEN)  # an interval is used once; a new one follows


@pytest.mark.parametrize("reached", [IntervalState.IDLE, IntervalState.OPEN,
                                     IntervalState.COMMITTING, IntervalState.APPLYING])
def test_interval_aborts_from_every_live_state(reached: IntervalState) -> None:
    interval = Lifecycle.interval()
    interval.state = reached
    interval.to(IntervalState.ABORTING)
    interval.to(IntervalState.ABORTED)
    with pytest.raises(IllegalTransition):
        interval.to(IntervalState.OPEN)


def test_nothing_to_commit_without_a_transaction() -> None:
    interval = Lifecycle.interval()
    with pytest.raises(IllegalTransition):
        interval.to(IntervalState.COMMITTING)
