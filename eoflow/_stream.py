"""Events and the streams agents iterate.

An event counts as processed when its agent asks for the next one (or the next batch, with
``take``). :class:`InFlight` counts events handed to agents (queued or in hand) and not yet
processed; the commit barrier waits for it to reach zero.

Two context variables tell the code an agent calls (sends, table writes) where it runs:
``current_stream`` is the :class:`Source` of the agent task (and of every task it spawns,
which inherit the context), ``current_event`` the event that task was given. An event is
*in hand* while ``source.holds(event)``; once the agent took the next one, a task spawned
for the old one can no longer add to its transaction.

A :class:`Stream` is a view of a source: operators (``filter``, ``group_by``,
``through``) return new views; ``take``, ``enumerate``, ``items`` and ``events`` iterate.
``group_by`` and ``through`` are *hops*: the worker learns them once at start (it runs each
agent up to its first iteration with a probe source) and wires a topic between the two
sides; the agent then iterates the hop's topic.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from eoflow._inbox import Inbox
from eoflow._models import FieldDescriptor

if TYPE_CHECKING:
    from eoflow._topic import Topic

__all__ = ["Event", "Hop", "InFlight", "Source", "Stream", "current_event", "current_stream"]

KT = TypeVar("KT")
VT = TypeVar("VT")

Predicate = Callable[[Any], "bool | Awaitable[bool]"]
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class Event(NamedTuple, Generic[KT, VT]):
    """One input record, decoded. ``timestamp`` is its event time in ms: the record's Kafka
    timestamp, or what its topic's ``timestamp_extractor`` read from the value.

    Immutable. A named tuple rather than a frozen dataclass: one is built per record, and
    a frozen dataclass' ``__init__`` (an ``object.__setattr__`` per field) cost 2.5 times as much.
    """

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

#: The source of the agent whose task (or spawned task) is running.
current_stream: ContextVar[Source | None] = ContextVar("eoflow_stream", default=None)


class InFlight:
    """Counts events taken by agents and not yet processed (plus sends under way from
    tasks an agent spawned, which hold their event's place until they return).

    ``cut`` is set while a commit barrier waits: a ``take`` batch still filling yields
    what it has at once.
    """

    def __init__(self) -> None:
        self._count = 0
        self._epoch = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.cut = asyncio.Event()

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


@dataclass(frozen=True)
class Hop:
    """A ``group_by`` (new key, ``key`` set) or ``through`` (``topic`` set) in a stream."""

    name: str
    key: Callable[[Any], Any] | None = None
    topic: Topic[Any, Any] | None = None
    partitions: int | None = None
    #: Filters applied before the hop (run on the hop's sending side).
    filters: tuple[Predicate, ...] = ()


class Source:
    """An agent instance's events: its inbox, what it holds, and the task that iterates."""

    def __init__(self, inbox: Inbox[Event[Any, Any]], in_flight: InFlight,
                 agent: str = "agent", hops: Sequence[Hop] = ()) -> None:
        self._inbox = inbox
        self._in_flight = in_flight
        self._current: Event[Any, Any] | None = None
        self._batch: list[Event[Any, Any]] = []
        self._taken_at = 0.0
        self._closed = False
        self._deferred: list[Callable[[], Awaitable[None]]] = []
        #: Name of the agent that iterates this source.
        self.agent = agent
        #: The agent's own task (set when it starts iterating).
        self.task: asyncio.Task[Any] | None = None
        #: The hops the worker discovered for this agent (its events come after them).
        self.hops = tuple(hops)

    @property
    def current_event(self) -> Event[Any, Any] | None:
        """The event the agent is processing (the last of a batch), if any."""
        return self._current

    @property
    def held_for(self) -> float:
        """Seconds the agent has been processing its current event or batch (0 if none)."""
        return time.monotonic() - self._taken_at if self._current is not None else 0.0

    def holds(self, event: Event[Any, Any]) -> bool:
        """Whether ``event`` is still in the agent's hand (not processed, not abandoned)."""
        return self._current is event or (bool(self._batch) and
                                          any(e is event for e in self._batch))

    def participating(self) -> bool:
        """Whether this scope's work belongs to the open interval with no event in hand
        (a timer's run does; an agent between two events does not)."""
        return False

    def batch_partitions(self) -> set[tuple[str, int]]:
        """The partitions of the batch in hand (empty when not in a ``take`` batch)."""
        return {(e.topic, e.partition) for e in self._batch}

    def defer(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` when the agent is done with its event, before the event counts as
        processed: still inside the event and its transaction (window-close hooks)."""
        self._deferred.append(work)

    async def run_deferred(self) -> None:
        """Run the deferred work, in order (the agent task calls it)."""
        while self._deferred:
            work = self._deferred.pop(0)
            await work()

    def bind(self) -> None:
        """Make the calling task this source's agent task (call from the agent task)."""
        self.task = asyncio.current_task()
        current_stream.set(self)

    def next_nowait(self, filters: Sequence[Predicate] = ()) -> Event[Any, Any] | None:
        """:meth:`next` when it would not await (no filters, nothing deferred, an event in
        the inbox), else None: the agent's loop calls this first and then :meth:`next`,
        so an event costs no coroutine."""
        if filters or self._deferred or self._closed:
            return None
        self.finish()
        item = self._inbox.pop()
        if item is not None:
            self._hand(item)
        return item

    async def next(self, filters: Sequence[Predicate] = ()) -> Event[Any, Any]:
        """Finish what is in hand; take the next event that passes ``filters``."""
        while True:
            if self._deferred:
                await self.run_deferred()
            self.finish()
            item = None if self._closed else self._inbox.pop()
            if item is None:
                item = await self._get()
            self._hand(item)
            if not filters or await _passes(filters, item.value):
                return item

    async def next_batch(self, max_: int, within: float | None,
                         filters: Sequence[Predicate] = ()) -> list[Event[Any, Any]]:
        """Finish what is in hand; take up to ``max_`` events, fewer once ``within``
        seconds passed since the first, or a commit barrier is waiting."""
        await self.run_deferred()
        self.finish()
        batch: list[Event[Any, Any]] = []
        deadline: float | None = None
        while len(batch) < max_:
            if batch and (self._in_flight.cut.is_set() or
                          (deadline is not None and time.monotonic() >= deadline)):
                break
            item = self._inbox.pop()
            if item is None:
                if not batch:
                    item = await self._get()
                else:
                    timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
                    item = await self._get_or_cut(timeout)
                    if item is None:
                        break
            self._check_open()
            if not await _passes(filters, item.value):
                self._in_flight.done()  # filtered out: processed at once
                continue
            batch.append(item)
            if deadline is None and within is not None:
                deadline = time.monotonic() + within
        self._batch = batch
        self._current = batch[-1]
        self._taken_at = time.monotonic()
        current_event.set(self._current)
        return batch

    async def _get(self) -> Event[Any, Any]:
        """The next event, waiting for one (the inbox was empty)."""
        while True:
            self._check_open()
            item = self._inbox.pop()
            if item is not None:
                return item
            await self._inbox.wait()

    async def _get_or_cut(self, timeout: float | None) -> Event[Any, Any] | None:
        getter = asyncio.ensure_future(self._inbox.wait())
        cut = asyncio.ensure_future(self._in_flight.cut.wait())
        try:
            done, _ = await asyncio.wait({getter, cut}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done and not getter.cancelled():
            return self._inbox.pop()
        return None

    def _hand(self, item: Event[Any, Any]) -> None:
        self._current = item
        self._taken_at = time.monotonic()
        current_event.set(item)

    def _check_open(self) -> None:
        if self._closed:
            raise asyncio.CancelledError("stream closed")

    def finish(self) -> None:
        """Mark what is in hand processed."""
        if self._batch:
            n, self._batch = len(self._batch), []
            self._current = None
            current_event.set(None)
            self._in_flight.done(n)
        elif self._current is not None:
            self._current = None
            current_event.set(None)
            self._in_flight.done()

    def release(self) -> None:
        """Mark what is in hand processed (the agent returned normally)."""
        self.finish()

    def close(self) -> None:
        """The interval was aborted: what is in hand is abandoned, not processed.

        Tasks spawned for it can no longer send or write (they see it is not held).
        """
        self._closed = True
        self._current = None
        self._batch = []
        self._deferred = []


class Stream(Generic[KT, VT]):
    """What an agent iterates: ``async for value in stream``, ``stream.items()``,
    ``stream.events()``, ``stream.take(n, within=s)``, ``stream.enumerate()``; operators
    ``filter``, ``group_by`` and ``through`` return new streams."""

    def __init__(self, source: Source, *, position: int = 0,
                 filters: tuple[Predicate, ...] = (),
                 hops: tuple[Hop, ...] = ()) -> None:
        self._source = source
        self._position = position  # hops passed so far
        self._filters = filters  # filters since the last hop
        self._hops = hops  # hops recorded so far (the probe reads them)

    # -- what the agent's code sees --------------------------------------------------
    @property
    def current_event(self) -> Event[KT, VT] | None:
        """The event the agent is processing, if any."""
        return self._source.current_event

    @property
    def agent(self) -> str:
        return self._source.agent

    # -- operators -------------------------------------------------------------------
    def filter(self, predicate: Predicate) -> Stream[KT, VT]:
        """Only events whose value passes ``predicate`` (sync or async); the others count
        as processed at once."""
        return Stream(self._source, position=self._position,
                      filters=(*self._filters, predicate), hops=self._hops)

    def group_by(self, key: Callable[[VT], Any] | str | FieldDescriptor, *,
                 name: str | None = None, partitions: int | None = None) -> Stream[Any, VT]:
        """Re-key the stream by ``key`` (a function of the value, a field name, or a Record
        field as in Faust: ``Withdrawal.user``) through the topic
        ``{app_id}-{agent}-{name}-repartition``, inside the transaction; the returned
        stream reads that topic, so tables keyed by the new key are co-partitioned with
        it."""
        if isinstance(key, FieldDescriptor):
            key = key.name
        if isinstance(key, str):
            label, getter = key, _field_getter(key)
        else:
            label, getter = getattr(key, "__name__", "<lambda>"), key
        hop_name = name or label
        if hop_name == "<lambda>":
            raise _config_error(f"agent {self.agent!r}: group_by(lambda ...) needs name=... "
                                "(it names the repartition topic)")
        if not _NAME.match(hop_name):
            raise _config_error(f"group_by(name={hop_name!r}): use letters, digits, '.', '_' "
                                "or '-' (it names the repartition topic)")
        return self._hop(Hop(hop_name, key=getter, partitions=partitions,
                             filters=self._filters))

    def through(self, topic: Topic[Any, Any]) -> Stream[KT, VT]:
        """Send every event to ``topic`` inside the transaction; the returned stream reads
        ``topic`` (a repartition point you name)."""
        return self._hop(Hop(f"through-{topic.name}", topic=topic, filters=self._filters))

    def _hop(self, hop: Hop) -> Stream[Any, Any]:
        hops = (*self._hops, hop)
        planned = self._source.hops
        if planned and (self._position >= len(planned) or
                        planned[self._position].name != hop.name):
            raise _config_error(
                f"agent {self.agent!r} called {hop.name!r} where it called "
                f"{[h.name for h in planned]} at start-up: an agent must build the same "
                "stream every time it starts")
        return Stream(self._source, position=self._position + 1, hops=hops)

    # -- iteration -------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[VT]:
        return self._values()

    async def _values(self) -> AsyncIterator[VT]:
        self._check_plan()
        source, filters = self._source, self._filters
        while True:
            event = source.next_nowait(filters) or await source.next(filters)
            yield event.value

    async def items(self) -> AsyncIterator[tuple[KT, VT]]:
        """Yield ``(key, value)`` pairs."""
        self._check_plan()
        source, filters = self._source, self._filters
        while True:
            event = source.next_nowait(filters) or await source.next(filters)
            yield event.key, event.value

    async def events(self) -> AsyncIterator[Event[KT, VT]]:
        """Yield whole events with topic, partition, offset, timestamp and headers."""
        self._check_plan()
        source, filters = self._source, self._filters
        while True:
            yield source.next_nowait(filters) or await source.next(filters)

    async def enumerate(self, start: int = 0) -> AsyncIterator[tuple[int, VT]]:
        """Yield ``(i, value)``, counting from ``start`` (per agent run: it restarts after
        an abort or a restart, so do not use ``i`` as an identifier across runs)."""
        self._check_plan()
        i = start
        source, filters = self._source, self._filters
        while True:
            event = source.next_nowait(filters) or await source.next(filters)
            yield i, event.value
            i += 1

    async def take(self, max_: int, within: float | None = None) -> AsyncIterator[list[VT]]:
        """Yield lists of up to ``max_`` values: fewer once ``within`` seconds passed since
        the batch's first event, or when a commit is waiting. The whole batch is in hand
        until the agent asks for the next one: its offsets commit only with everything the
        agent did with it."""
        if max_ < 1:
            raise _config_error(f"take(max_={max_}): take at least one")
        self._check_plan()
        while True:
            batch = await self._source.next_batch(max_, within, self._filters)
            yield [e.value for e in batch]

    async def take_events(self, max_: int,
                          within: float | None = None) -> AsyncIterator[list[Event[KT, VT]]]:
        """:meth:`take`, yielding whole events (with their coordinates)."""
        if max_ < 1:
            raise _config_error(f"take_events(max_={max_}): take at least one")
        self._check_plan()
        while True:
            yield await self._source.next_batch(max_, within, self._filters)

    def _check_plan(self) -> None:
        planned = self._source.hops
        if isinstance(self._source, _ProbeSource):
            self._source.found(self._hops, self._filters)
        elif self._position != len(planned):
            raise _config_error(
                f"agent {self.agent!r} iterates its stream after {self._position} of the "
                f"{len(planned)} hops it declared at start-up: an agent must build the same "
                "stream every time it starts")


class Discovered(Exception):
    """The probe learned an agent's stream: raised at its first iteration."""


class _ProbeSource(Source):
    """A source that records the stream an agent builds and stops it at its first step."""

    def __init__(self, agent: str) -> None:
        super().__init__(Inbox(), InFlight(), agent)
        self.found_hops: tuple[Hop, ...] = ()
        self.found_filters: tuple[Predicate, ...] = ()

    def found(self, hops: tuple[Hop, ...], filters: tuple[Predicate, ...]) -> None:
        self.found_hops, self.found_filters = hops, filters
        raise Discovered(self.agent)


def probe(agent: str) -> tuple[_ProbeSource, Stream[Any, Any]]:
    """A probe source and a stream over it (the worker discovers agents' hops with it)."""
    source = _ProbeSource(agent)
    return source, Stream(source)


async def _passes(filters: Sequence[Predicate], value: Any) -> bool:
    for predicate in filters:
        result = predicate(value)
        if inspect.isawaitable(result):
            result = await result
        if not result:
            return False
    return True


def _field_getter(name: str) -> Callable[[Any], Any]:
    def get(value: Any) -> Any:
        if isinstance(value, dict):
            return value[name]
        return getattr(value, name)

    get.__name__ = name
    return get


def _config_error(message: str) -> Exception:
    from eoflow.errors import ConfigurationError

    return ConfigurationError(message)

