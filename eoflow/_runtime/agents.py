"""Agent supervision: one task per agent instance, restarted as a group after an abort."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from eoflow._app import AgentHandle, AgentSpec
from eoflow._inbox import Inbox
from eoflow._stream import Event, Hop, InFlight, Source, Stream
from eoflow._topic import Topic

__all__ = ["AgentInstance", "AgentSupervisor", "FailureHandler"]

log = logging.getLogger(__name__)

#: Called when an agent raises: ``(instance, event in hand or None, exception)``.
FailureHandler = Callable[["AgentInstance", Event[Any, Any] | None, BaseException], None]


@dataclass(eq=False)
class AgentInstance:
    """One running copy of an agent (``concurrency`` copies per agent)."""

    spec: AgentSpec
    index: int
    inbox: Inbox[Event[Any, Any]]
    hops: tuple[Hop, ...] = ()
    task: asyncio.Task[None] | None = None
    stream: Source | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name if self.spec.concurrency == 1 else f"{self.spec.name}#{self.index}"


class AgentSupervisor:
    """Starts agent tasks in the worker's task group; cancels and restarts them on abort.

    Events of one partition always go to the same instance, so per-partition order holds
    with ``concurrency > 1``.
    """

    def __init__(self, specs: list[AgentSpec], in_flight: InFlight, queue_size: int,
                 on_failure: FailureHandler,
                 hops: dict[str, tuple[Hop, ...]] | None = None) -> None:
        self.in_flight = in_flight
        self._feeder: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._feeder_task: asyncio.Task[None] | None = None
        self._on_failure = on_failure
        self.instances: dict[str, list[AgentInstance]] = {
            spec.name: [AgentInstance(spec, i, Inbox(queue_size),
                                      (hops or {}).get(spec.name, ()))
                        for i in range(spec.concurrency)]
            for spec in specs
        }
        self._group: asyncio.TaskGroup | None = None
        #: Timer runs under way: participants of the interval, cancelled with the agents.
        self._runs: set[asyncio.Task[None]] = set()

    def adopt(self, run: asyncio.Task[None]) -> None:
        """Cancel ``run`` with the agents on abort (until it is done)."""
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    def route(self, agent: str, partition: int) -> AgentInstance:
        instances = self.instances[agent]
        return instances[partition % len(instances)]

    def start(self, group: asyncio.TaskGroup,
              feeder: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start the agents and the ``feeder`` (the dispatcher loop) in ``group``."""
        self._group = group
        self._feeder = feeder
        self.spawn_all()

    def _all(self) -> list[AgentInstance]:
        return [i for instances in self.instances.values() for i in instances]

    def _spawn(self, instance: AgentInstance) -> None:
        if self._group is None:
            raise RuntimeError("agents started outside the worker's task group")
        instance.task = self._group.create_task(self._run(instance), name=instance.name)

    async def _run(self, instance: AgentInstance) -> None:
        while True:
            source = Source(instance.inbox, self.in_flight, instance.spec.name, instance.hops)
            source.bind()
            instance.stream = source
            try:
                await _drive(instance.spec, Stream(source))
                await source.run_deferred()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._on_failure(instance, source.current_event, exc)
                return
            source.release()
            log.warning("agent %s returned; restarting it on the same stream", instance.name)

    def spawn_all(self) -> None:
        """Start the feeder and every agent (again, after :meth:`cancel`)."""
        if self._group is None or self._feeder is None:
            raise RuntimeError("agents started outside the worker's task group")
        for instance in self._all():
            self._spawn(instance)
        self._feeder_task = self._group.create_task(self._feeder(), name="dispatcher")

    async def cancel(self) -> None:
        """Cancel the feeder, every agent and timer run; forget the events they held or had
        queued.

        The feeder goes too: it may be waiting for room in a full inbox to hand over
        records of the aborted interval, which must not land in an inbox after the rewind.
        """
        tasks = [i.task for i in self._all() if i.task is not None and not i.task.done()]
        tasks += [run for run in self._runs if not run.done()]
        if self._feeder_task is not None and not self._feeder_task.done():
            tasks.append(self._feeder_task)
        self._feeder_task = None
        while tasks:  # again if one swallowed it (asyncio.wait_for can, in Python 3.11)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            tasks = [t for t in tasks if not t.done()]
        for instance in self._all():
            instance.task = None
            if instance.stream is not None:
                instance.stream.close()  # tasks spawned for its event can no longer send
            instance.inbox.clear()
        self.in_flight.reset()

    def held_events(self) -> list[tuple[AgentInstance, Event[Any, Any], float]]:
        """``(instance, event, seconds in hand)`` of every event an agent is processing."""
        held = []
        for instance in self._all():
            stream = instance.stream
            if stream is not None and stream.current_event is not None:
                held.append((instance, stream.current_event, stream.held_for))
        return held


async def _drive(spec: AgentSpec, stream: Stream[Any, Any]) -> None:
    """Run the agent; forward what a yielding agent yields to its sinks (in its event)."""
    result = spec.fun(stream)
    if not inspect.isasyncgen(result):
        await result
        return
    async for item in result:
        for sink in spec.sink:
            if isinstance(sink, Topic | AgentHandle):
                await sink.send(value=item)
            else:
                outcome = sink(item)
                if inspect.isawaitable(outcome):
                    await outcome
