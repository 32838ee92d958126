"""Events and the stream an agent iterates.

An event counts as processed when its agent asks for the next one (or the agent's stream
ends). :class:`InFlight` counts events handed to agents and not yet processed; the commit
barrier waits for it to reach zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Event", "InFlight", "Stream", "current_agent", "current_event"]

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


#: Name of the agent whose task is running; lets a send name the event that caused it.
current_agent: ContextVar[str | None] = ContextVar("eoflow_agent", default=None)

#: The event the current agent task is processing (tables use its partition).
current_event: ContextVar[Event[Any, Any] | None] = ContextVar("eoflow_event", default=None)


class InFlight:
    """Counts events handed to agents and not yet processed."""

    def __init__(self) -> None:
        self._count = 0
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
        self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Stream(Generic[KT, VT]):
    """What an agent iterates: ``async for value in stream``, ``stream.items()``,
    ``stream.events()``."""

    def __init__(self, queue: asyncio.Queue[Any], in_flight: InFlight) -> None:
        self._queue = queue
        self._in_flight = in_flight
        self._current: Event[KT, VT] | None = None

    @property
    def current_event(self) -> Event[KT, VT] | None:
        """The event the agent is processing, if any."""
        return self._current

    async def _next(self) -> Event[KT, VT]:
        self._finish_current()
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            item = await self._queue.get()
        self._current = item
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
