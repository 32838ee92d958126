"""The dispatcher: the one task that fetches records and hands them to agents.

It is also the only task that moves the consumer's position between rebalances (a rewind
after an abort is applied here, before the next fetch), so no fetch is ever in flight
while the position changes. Records go to an agent's inbox in batches (one per fetched
partition, as far as the inbox has room). A gate lets the commit barrier stop dispatch
between two batches; an epoch makes a batch fetched before an abort be dropped, not
dispatched.

Flow control: the barrier waits for every event handed out, so agents that were handed
more than they can process within the barrier's budget would abort every interval. After
such an abort (no single event slow, see ``Committer._blame_slow``) :meth:`throttle` caps
the events handed out per interval at half of what the aborted one got, down to one;
every commit doubles the cap until it no longer binds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eoflow._app import AgentSpec
from eoflow._inbox import Inbox
from eoflow._stream import Event
from eoflow._topic import Topic
from eoflow._transport.base import ConsumedRecord, GroupConsumer, TopicPartition
from eoflow._windows import time_seconds
from eoflow.errors import EoflowError, SerializationError

from .agents import AgentSupervisor
from .poison import PoisonKey, PoisonLedger
from .sender import DeadLetter

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

#: A throttle cap above this is lifted.
MAX_CAP = 1 << 20

_Deliveries = list[tuple[Inbox[Event[Any, Any]], Event[Any, Any]]]


@dataclass(frozen=True)
class _Route:
    spec: AgentSpec
    topic: Topic[Any, Any]


class Dispatcher:
    """Routes records to agent instances and remembers the next offset of each partition."""

    def __init__(
        self,
        specs: Sequence[AgentSpec],
        supervisor: AgentSupervisor,
        poison: PoisonLedger,
        *,
        begin: Callable[[], Awaitable[None]],
        accepts: Callable[[], bool],
        dead_letter: Callable[[DeadLetter], Awaitable[None]],
        batch_size: int = 1000,
    ) -> None:
        self._routes: dict[str, list[_Route]] = {}
        for spec in specs:
            for topic in spec.topics:
                for name in topic.names:
                    self._routes.setdefault(name, []).append(_Route(spec, topic))
        self._supervisor = supervisor
        self._poison = poison
        self._begin = begin
        self._accepts = accepts
        self._dead_letter = dead_letter
        self._batch_size = batch_size
        self._gate = asyncio.Event()
        self._held = True  # until the first assignment completes
        self._busy = asyncio.Lock()
        self._epoch = 0
        self._rewind: dict[TopicPartition, int] = {}
        #: Next offset to commit per partition: everything before it was handed out.
        self._next_offsets: dict[TopicPartition, int] = {}
        #: Records handed out per partition since the last :meth:`take_offsets`, and the
        #: counts of the offsets it took last (the commit's ``records in``).
        self._counts: dict[TopicPartition, int] = {}
        self.taken_counts: dict[TopicPartition, int] = {}
        #: One past the last record fetched per partition (for the lag: markers after it).
        self.fetched_to: dict[TopicPartition, int] = {}
        #: Records handed out this interval, and the most allowed (None: no cap).
        self._dispatched = 0
        self.cap: int | None = None

    @property
    def topics(self) -> list[str]:
        return sorted(self._routes)

    # -- control (called by the commit cycle and the rebalance handler) -------------
    def open(self) -> None:
        """Resume dispatch for a new interval, unless a rebalance holds it."""
        self._dispatched = 0
        if not self._held:
            self._gate.set()

    def throttle(self) -> None:
        """Agents could not finish what they were handed: hand out half as much."""
        self.cap = max(1, min(self.cap or self._dispatched, self._dispatched) // 2)
        log.warning("agents fall behind: handing out at most %d records per interval",
                    self.cap)

    def relax(self) -> None:
        """An interval committed: allow twice as much (lift the cap once it is large)."""
        if self.cap is not None:
            self.cap = None if self.cap * 2 > MAX_CAP else self.cap * 2

    def hold(self) -> None:
        """Stop dispatch until :meth:`release` (partitions revoked, assignment pending)."""
        self._held = True
        self._gate.clear()

    def release(self) -> None:
        """The new assignment is restored and rewound: dispatch may go on."""
        self._held = False
        self._gate.set()

    async def close(self) -> None:
        """Stop dispatch; returns once no record is being handed to an agent."""
        self._gate.clear()
        async with self._busy:
            pass

    async def admit(self) -> int:
        """Wait until the open interval takes work (dispatch open), then hold a place in
        it: the barrier waits until :meth:`InFlight.unhold` with the returned token."""
        while not self._gate.is_set():
            await self._gate.wait()
        token = self._supervisor.in_flight.hold()
        try:
            await self._begin()  # a participant's table writes need an open interval too
        except BaseException:
            self._supervisor.in_flight.unhold(token)
            raise
        return token

    def take_offsets(self) -> dict[TopicPartition, int]:
        """The next offset of every partition dispatched to since the last call (the
        barrier takes them: they belong to the interval being committed)."""
        offsets, self._next_offsets = self._next_offsets, {}
        self.taken_counts, self._counts = self._counts, {}
        return offsets

    def rewind(self, offsets: dict[TopicPartition, int]) -> None:
        """Drop what was fetched and seek to ``offsets`` before the next fetch."""
        self._epoch += 1
        self._rewind.update(offsets)
        for tp in offsets:
            self._next_offsets.pop(tp, None)
            self._counts.pop(tp, None)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions were revoked: drop their fetched records and pending offsets."""
        self._epoch += 1
        for tp in partitions:
            self._next_offsets.pop(tp, None)
            self._rewind.pop(tp, None)
            self._counts.pop(tp, None)

    # -- the loop -------------------------------------------------------------------
    async def run(self, consumer: GroupConsumer) -> None:
        while True:
            await self._gate.wait()
            # The epoch is taken before seeking: a rewind requested while a seek awaits
            # must drop the batch fetched next, and is applied on the next turn.
            epoch = self._epoch
            rewind, self._rewind = self._rewind, {}
            try:
                if rewind:
                    await consumer.seek(rewind)
                batch = await consumer.fetch(0.1, self._batch_size)
            except EoflowError as exc:
                if not exc.retriable:
                    raise
                log.warning("fetching failed (%s); retrying", exc)
                self._rewind = {**rewind, **self._rewind}
                await asyncio.sleep(0.5)
                continue
            for tp, records in batch.items():
                if epoch != self._epoch:
                    break
                if records:
                    self.fetched_to[tp] = records[-1].offset + 1
                if not await self._dispatch(tp, records, epoch):
                    break

    async def _dispatch(self, tp: TopicPartition, records: Sequence[ConsumedRecord],
                        epoch: int) -> bool:
        """Hand the records of one partition to their agents (or the dead-letter topic);
        False once an abort or a revoke (a new epoch) made the rest stale.

        The common case hands over as many records as every target inbox has room for (and
        the throttle allows) in one step with no await: decoded, counted in flight, offsets
        recorded, then one batch of events per inbox. It cannot interleave with a barrier,
        and a barrier can never commit an interval that holds an event's outputs but not
        its offset. The gate and the epoch are checked before every step. The rest
        (an interval that takes no events, a poison record, dead letters) goes one record at a time
        holding ``_busy``, which the barrier waits for. A full inbox is waited for before
        the next step, holding nothing, so a slow agent does not block the barrier.
        Routes are looked up once per partition's records.
        """
        targets = [(route.topic, self._supervisor.route(route.spec.name, tp.partition).inbox)
                   for route in self._routes[tp.topic]]
        done, total, slow = 0, len(records), False
        while done < total:
            if not self._gate.is_set():
                await self._gate.wait()
            if epoch != self._epoch:
                return False
            room = min((inbox.room() for _, inbox in targets), default=total)
            if room < 1:
                for _, inbox in targets:
                    await inbox.wait_room()
                continue
            if slow or not self._accepts() or self._poison:
                async with self._busy:
                    await self._begin()
                    for inbox, event in await self._prepare_slowly(tp, records[done]):
                        inbox.put([event])
                done, slow = done + 1, False
                continue
            end = min(total, done + room)
            if self.cap is not None:
                end = min(end, done + max(1, self.cap - self._dispatched))
            done += self._hand_over(tp, records[done:end], targets)
            slow = done < end  # the next record cannot be decoded: the dead-letter path
        return True

    def _hand_over(self, tp: TopicPartition, records: Sequence[ConsumedRecord],
                   targets: list[tuple[Topic[Any, Any], Inbox[Event[Any, Any]]]]) -> int:
        """Decode ``records`` for every target, count them and queue one batch per
        target, without awaiting. Stops before the first record that cannot be decoded
        (it needs the dead-letter path); returns how many it handed over."""
        batches = [_decode_all(topic, records) for topic, _ in targets]
        good = min((len(events) for events in batches), default=len(records))
        if good:
            self._account(tp, records[good - 1], good, good * len(targets))
            for (_, inbox), events in zip(targets, batches, strict=True):
                inbox.put(events if len(events) == good else events[:good])
        return good

    async def _prepare_slowly(self, tp: TopicPartition,
                              record: ConsumedRecord) -> _Deliveries:
        deliveries: _Deliveries = []
        for route in self._routes[record.topic]:
            agent = route.spec.name
            key = PoisonKey(agent, record.topic, record.partition, record.offset)
            if self._poison.exhausted(key):
                error = (f"agent failed {self._poison.tries(key)} times; last error: "
                         f"{self._poison.last_error(key)}")
                await self._dead_letter(DeadLetter(record, agent, error, True))
                continue
            try:
                event = _decode(route.topic, record)
            except SerializationError as exc:
                await self._dead_letter(DeadLetter(record, agent, str(exc)))
                continue
            deliveries.append((self._supervisor.route(agent, record.partition).inbox, event))
        self._account(tp, record, 1, len(deliveries))
        return deliveries

    def _account(self, tp: TopicPartition, last: ConsumedRecord, records: int,
                 events: int) -> None:
        """Count ``events`` in flight for ``records`` records of ``tp`` ending at ``last``."""
        self._supervisor.in_flight.add(events)
        self._next_offsets[tp] = last.offset + 1
        self._counts[tp] = self._counts.get(tp, 0) + records
        self._dispatched += records
        if self.cap is not None and self._dispatched >= self.cap:
            self._gate.clear()  # until the next interval opens it


def _decode_all(topic: Topic[Any, Any], records: Sequence[ConsumedRecord],
                ) -> list[Event[Any, Any]]:
    """The events of ``records`` up to the first that cannot be decoded.

    :func:`_decode` inlined, for it runs once per record: the codecs looked up once, the
    event built by ``tuple.__new__`` (a named tuple's own ``__new__`` is Python code).
    """
    events: list[Event[Any, Any]] = []
    if topic.time_of is not None:
        try:
            for record in records:
                events.append(_decode(topic, record))
        except SerializationError:
            pass
        return events
    key_loads, value_loads = topic.key_codec.loads, topic.value_codec.loads
    append = events.append
    for record in records:
        try:
            key = None if record.key is None else key_loads(record.key)
            value = None if record.value is None else value_loads(record.value)
        except Exception:
            break  # :func:`_decode` names what failed on the dead-letter path
        headers = record.headers
        append(_new_event(Event, (key, value, record.topic, record.partition, record.offset,
                                  record.timestamp, tuple(headers) if headers else ())))
    return events


_new_event = tuple.__new__


def _decode(topic: Topic[Any, Any], record: ConsumedRecord) -> Event[Any, Any]:
    try:
        key = None if record.key is None else topic.key_codec.loads(record.key)
    except Exception as exc:
        raise _undecodable("key", topic.key_codec.name, record, exc) from exc
    try:
        value = None if record.value is None else topic.value_codec.loads(record.value)
    except Exception as exc:
        raise _undecodable("value", topic.value_codec.name, record, exc) from exc
    timestamp = record.timestamp
    if topic.time_of is not None and value is not None:
        timestamp = extract_time(topic, record, value)
    return Event(key, value, record.topic, record.partition, record.offset,
                 timestamp, tuple(record.headers) if record.headers else ())


#: Seconds beyond which an extracted time is taken for milliseconds (the year 5138).
_LARGEST_SECONDS = 1e11


def extract_time(topic: Topic[Any, Any], record: ConsumedRecord, value: Any) -> int:
    """The record's event time (ms) by its topic's ``timestamp_extractor``; a value it
    cannot read raises :class:`SerializationError` (the record is dead-lettered)."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    assert topic.time_of is not None
    try:
        found = topic.time_of(value)
    except Exception as exc:
        raise SerializationError(
            f"cannot read the event time of {where} with its topic's timestamp_extractor: "
            f"{exc!r}") from exc
    t = time_seconds(found)
    if t is None or t < 0:
        raise SerializationError(
            f"the timestamp_extractor of {where} gave {found!r}: an event time must be a "
            "datetime or seconds since the epoch, not negative")
    if t > _LARGEST_SECONDS:
        raise SerializationError(
            f"the timestamp_extractor of {where} gave {found!r}, after the year 5000: "
            "milliseconds? it must give seconds since the epoch")
    return round(t * 1000)


def _undecodable(part: str, codec: str, record: ConsumedRecord,
                 exc: Exception) -> SerializationError:
    return SerializationError(f"cannot decode {part} of {record.topic}[{record.partition}]"
                              f"@{record.offset} with {codec}: {exc}")
