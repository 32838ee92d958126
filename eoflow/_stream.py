"""Events and the stream an agent iterates.

An event counts as processed when its agent asks for the next one (or the agent's stream
ends). :class:`InFlight` counts events handed to agents and not yet processed; the commit
barrier waits for it to reach zero.

Two context variables tell the code an agent calls (sends, table writes) where it runs:
``current_stream`` is the stream of the agent task (and of every task it spawns, which
inherit the context), ``current_event`` the event that task was given. An event is *in
hand* while ``stream.current_event is event``; once the agent took the next event, a
task spawned for the old one can no longer add to its transaction (:meth:`Stream.holds`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Event", "InFlight", "Stream", "current_event", "current_stream"]

KT = TypeVar("KT")
VT = TypeVar("VT")


@dataclass(frozen=True, slots=True)
class Event(Generic[KT, VT]):
    """One input record, decoded."""

    key: KT
    value: VT
    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: Sequence[tuple[str, bytes]]

    def describe(self) -> str:
        """``topic[partition]@offset``, for messages."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


#: The event the current agent task was given (tables use its partition).
current_event: ContextVar[Event[Any, Any] | None] = ContextVar("eoflow_event", default=None)

#: The stream of the agent whose task (or spawned task) is running.
current_stream: ContextVar[Stream[Any, Any] | None] = ContextVar("eoflow_stream", default=None)


class InFlight:
    """Counts events handed to agents and not yet processed (plus sends under way from
    tasks an agent spawned, which hold their event's place until they return)."""

    def __init__(self) -> None:
        self._count = 0
        self._epoch = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, n: int = 1) -> None:
        self._count += n
        if self._count:
            self._idle.clear()

    def done(self, n: int = 1) -> None:
        self._count -= n
        if self._count < 0:
            raise RuntimeError("more events processed than dispatched")
        if not self._count:
            self._idle.set()

    def reset(self) -> None:
        """Forget every event in flight (agents were cancelled and queues emptied)."""
        self._count = 0
        self._epoch += 1
        self._idle.set()

    def hold(self) -> int:
        """Count one more in flight until :meth:`unhold` with the returned token."""
        self.add()
        return self._epoch

    def unhold(self, token: int) -> None:
        """Undo a :meth:`hold`, unless a :meth:`reset` forgot it already."""
        if token == self._epoch:
            self.done()

    @property
    def count(self) -> int:
        return self._count

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Stream(Generic[KT, VT]):
    """What an agent iterates: ``async for value in stream``, ``stream.items()``,
    ``stream.events()``."""

    def __init__(self, queue: asyncio.Queue[Any], in_flight: InFlight,
                 agent: str = "agent") -> None:
        self._queue = queue
        self._in_flight = in_flight
        self._current: Event[KT, VT] | None = None
        self._taken_at = 0.0
        self._closed = False
        #: Name of the agent (instance) that iterates this stream.
        self.agent = agent
        #: The agent's own task (set when it starts iterating).
        self.task: asyncio.Task[Any] | None = None

    @property
    def current_event(self) -> Event[KT, VT] | None:
        """The event the agent is processing, if any."""
        return self._current

    @property
    def held_for(self) -> float:
        """Seconds the agent has been processing its current event (0 if none)."""
        return time.monotonic() - self._taken_at if self._current is not None else 0.0

    def holds(self, event: Event[Any, Any]) -> bool:
        """Whether ``event`` is still in the agent's hand (not processed, not abandoned)."""
        return self._current is event

    def bind(self) -> None:
        """Make the calling task this stream's agent task (call from the agent task)."""
        self.task = asyncio.current_task()
        current_stream.set(self)

    async def _next(self) -> Event[KT, VT]:
        self._finish_current()
        if self._closed:
            raise asyncio.CancelledError("stream closed")
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            item = await self._queue.get()
        self._current = item
        self._taken_at = time.monotonic()
        current_event.set(item)
        return item  # type: ignore[no-any-return]

    def _finish_current(self) -> None:
        if self._current is not None:
            self._current = None
            current_event.set(None)
            self._in_flight.done()

    def release(self) -> None:
        """Mark the event in hand processed (the agent returned normally)."""
        self._finish_current()

    def close(self) -> None:
        """The interval was aborted: the event in hand is abandoned, not processed.

        Tasks spawned for it can no longer send or write (they see it is not held).
        """
        self._closed = True
        self._current = None

    def __aiter__(self) -> AsyncIterator[VT]:
        return self._values()

    async def _values(self) -> AsyncIterator[VT]:
        while True:
            event = await self._next()
            yield event.value

    async def items(self) -> AsyncIterator[tuple[KT, VT]]:
        """Yield ``(key, value)`` pairs."""
        while True:
            event = await self._next()
            yield event.key, event.value

    async def events(self) -> AsyncIterator[Event[KT, VT]]:
        """Yield whole events with topic, partition, offset and headers."""
        while True:
            event = await self._next()
            yield event
