"""Explicit lifecycles: an enum, a transition table, and a transition method that raises.

::

    Worker:   INIT ─► STARTING ─► RUNNING ─► STOPPING ─► STOPPED
                │         │  │        │           ▲   ▲   ▲
                │         │  └────────┼───────────┘   │   │  (stop while starting)
                │         └───────────┴─► FAILED ─────┘   │  (stop after a fatal error)
                └─────────────────────────────────────────┘  (never started)

    Interval: IDLE ─► OPEN ─► COMMITTING ─► APPLYING ─► DONE
               │       │          │            │
               └───────┴──────────┴────────────┴─► ABORTING ─► ABORTED

One :class:`Lifecycle` per interval object: a new interval starts IDLE (no transaction
yet), DONE and ABORTED are final. APPLYING means the transaction committed and the table
stores are not written yet: an abort from there (or from COMMITTING, where the outcome is
unknown) must catch the stores up from their changelogs.
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

from eoflow.errors import LifecycleError

__all__ = ["IllegalTransition", "IntervalState", "Lifecycle", "WorkerState"]

S = TypeVar("S", bound=Enum)


#: Raised by :meth:`Lifecycle.to` on an edge the table does not have.
IllegalTransition = LifecycleError


class WorkerState(Enum):
    INIT = "init"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class IntervalState(Enum):
    IDLE = "idle"  # no transaction open
    OPEN = "open"  # a transaction holds this interval's sends
    COMMITTING = "committing"  # barrier, flush, offsets, EndTxn
    APPLYING = "applying"  # committed; the stores are being written
    DONE = "done"
    ABORTING = "aborting"
    ABORTED = "aborted"


_WORKER_EDGES: dict[Enum, frozenset[Enum]] = {
    WorkerState.INIT: frozenset({WorkerState.STARTING, WorkerState.STOPPED}),
    WorkerState.STARTING: frozenset({WorkerState.RUNNING, WorkerState.FAILED,
                                     WorkerState.STOPPING}),
    WorkerState.RUNNING: frozenset({WorkerState.STOPPING, WorkerState.FAILED}),
    WorkerState.FAILED: frozenset({WorkerState.STOPPING}),
    WorkerState.STOPPING: frozenset({WorkerState.STOPPED}),
    WorkerState.STOPPED: frozenset(),
}

_INTERVAL_EDGES: dict[Enum, frozenset[Enum]] = {
    IntervalState.IDLE: frozenset({IntervalState.OPEN, IntervalState.DONE,
                                   IntervalState.ABORTING}),
    IntervalState.OPEN: frozenset({IntervalState.COMMITTING, IntervalState.ABORTING}),
    IntervalState.COMMITTING: frozenset({IntervalState.APPLYING, IntervalState.ABORTING}),
    IntervalState.APPLYING: frozenset({IntervalState.DONE, IntervalState.ABORTING}),
    IntervalState.DONE: frozenset(),
    IntervalState.ABORTING: frozenset({IntervalState.ABORTED}),
    IntervalState.ABORTED: frozenset(),
}


class Lifecycle(Generic[S]):
    """Holds a state and refuses transitions its table does not allow."""

    def __init__(self, name: str, initial: S, edges: dict[Enum, frozenset[Enum]]) -> None:
        self.name = name
        self.state: S = initial
        self._edges = edges

    def to(self, target: S) -> None:
        if target not in self._edges[self.state]:
            raise IllegalTransition(f"{self.name}: {self.state.name} -> {target.name}")
        self.state = target

    def is_(self, *states: S) -> bool:
        return self.state in states

    @classmethod
    def worker(cls) -> Lifecycle[WorkerState]:
        return Lifecycle("worker", WorkerState.INIT, _WORKER_EDGES)

    @classmethod
    def interval(cls) -> Lifecycle[IntervalState]:
        return Lifecycle("interval", IntervalState.IDLE, _INTERVAL_EDGES)
