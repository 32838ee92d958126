"""Timers, crontabs, tasks and punctuators: user code the worker runs on a schedule.

A timer's (or crontab's, or punctuator's) run is a *participant* of the interval it runs
in: it starts only when dispatch is open (never during a commit), holds a place in flight
so the barrier waits for it, and sends straight into the interval's transaction. A run
that raises aborts the interval like a failing agent. Its effects commit together or not
at all: an abort of its interval (a failure elsewhere, or the run outliving the barrier's
budget) cancels a run still going, like the agents. A run whose interval aborted is not
repeated: the next one comes at its next due time (schedules are not persisted).

A punctuator runs once per assigned partition of its topic, with that partition as its
table context, so its table writes go to the partition's changelog in the transaction
(and are fenced by the interval's TxnOffsetCommit).

``@app.task`` runs once when the worker has its first assignment, beside the schedule (it
may run for ever); it is not a participant: its sends join whatever interval is open (at
most once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from eoflow._app import TimerSpec
from eoflow._inbox import Inbox
from eoflow._stream import Event, InFlight, Source, current_event, current_stream
from eoflow._transport.base import TopicPartition

__all__ = ["Participant", "Timers"]

log = logging.getLogger(__name__)


class Participant(Source):
    """The scope of one run: sends join the interval; a punctuator's event gives tables
    their partition."""

    def __init__(self, name: str, in_flight: InFlight, event: Event[Any, Any] | None) -> None:
        super().__init__(Inbox(), in_flight, name)
        self._event = event
        self._running = True

    def participating(self) -> bool:
        return self._running

    def holds(self, event: Event[Any, Any]) -> bool:
        return self._running and event is self._event

    def done(self) -> None:
        self._running = False


class Timers:
    """Runs every scheduled participant of the app (one task in the worker's group)."""

    def __init__(self, specs: list[TimerSpec], *, clock: Callable[[], float],
                 admit: Callable[[], Awaitable[int]], in_flight: InFlight,
                 adopt: Callable[[asyncio.Task[None]], None],
                 failed: Callable[[BaseException, bool], None],
                 assignment: Callable[[], set[TopicPartition]], leader_topic: str | None) -> None:
        self._specs = [s for s in specs if s.kind != "task"]
        self._tasks = [s for s in specs if s.kind == "task"]
        self._clock = clock
        self._admit = admit
        self._in_flight = in_flight
        self._adopt = adopt
        self._failed = failed
        self._assignment = assignment
        self._leader_topic = leader_topic
        self.runs = 0
        #: The clock time up to which every due run has run (a test driver waits on it).
        self.caught_up_to = float("-inf")

    @property
    def scheduled(self) -> bool:
        """True if anything runs on a schedule (not just once, as ``@app.task``)."""
        return bool(self._specs)

    def is_leader(self) -> bool:
        """The worker assigned partition 0 of the app's first source topic leads."""
        return self._leader_topic is not None and \
            TopicPartition(self._leader_topic, 0) in self._assignment()

    async def run(self) -> None:
        """From the first assignment on: start the tasks, then run the schedule."""
        self._in_flight.unhold(await self._admit())
        async with asyncio.TaskGroup() as group:  # a task may run for ever, beside the rest
            for spec in self._tasks:
                group.create_task(self._once(spec), name=f"task-{spec.name}")
            if self._specs:
                group.create_task(self._schedule(), name="schedule")

    async def _schedule(self) -> None:
        now = self._clock()
        due = {spec.name: spec.next_due(now, first=True) for spec in self._specs}
        while True:
            now = self._clock()
            for spec in self._specs:
                if due[spec.name] <= now:
                    await self._fire(spec)
                    due[spec.name] = spec.next_due(max(now, due[spec.name]))
            self.caught_up_to = now
            wait = min(due.values()) - self._clock()
            cap = 0.5 if self._clock is time.time else 0.005  # a test clock moves by jumps
            await asyncio.sleep(min(max(wait, 0.0), cap))

    async def _once(self, spec: TimerSpec) -> None:
        if spec.on_leader and not self.is_leader():
            return
        try:
            await spec.fun()
        except Exception as exc:
            log.error("task %s failed: %r", spec.name, exc)
            self._failed(exc, True)

    async def _fire(self, spec: TimerSpec) -> None:
        if spec.on_leader and not self.is_leader():
            return
        token = await self._admit()
        try:
            if spec.kind == "punctuate":
                assert spec.topic is not None
                topic = spec.topic.name
                for tp in sorted(self._assignment()):
                    if tp.topic == topic:
                        stamp = int(self._clock() * 1000)
                        event: Event[Any, Any] = Event(None, None, topic, tp.partition, -1,
                                                       stamp, ())
                        await self._run(spec, event, tp.partition)
            else:
                await self._run(spec, None, None)
        finally:
            self._in_flight.unhold(token)

    async def _run(self, spec: TimerSpec, event: Event[Any, Any] | None,
                   partition: int | None) -> None:
        participant = Participant(spec.name, self._in_flight, event)

        async def body() -> None:
            participant.bind()
            current_event.set(event)
            try:
                await (spec.fun(partition) if partition is not None else spec.fun())
                await participant.run_deferred()
            finally:
                participant.done()

        task = asyncio.create_task(body(), name=f"timer-{spec.name}")
        self._adopt(task)  # an abort of the interval cancels the run with the agents
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()  # the worker stops: the run goes with it
            raise
        finally:
            current_stream.set(None)
        if task.cancelled():
            log.warning("%s %s was cancelled: its interval aborted, so none of its effects "
                        "commit; it runs again when next due", spec.kind, spec.name)
            return
        exc = task.exception()
        if exc is not None:
            log.warning("%s %s raised: %r; aborting the interval", spec.kind, spec.name, exc)
            self._failed(exc, False)
            return
        self.runs += 1
