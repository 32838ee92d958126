"""The send path: the one way records enter a transaction.

:class:`Sender` owns the open :class:`~eoflow._runtime.interval.Interval` and implements
what topics call (``send``) and what the dispatcher calls (``begin``, ``dead_letter``).
Where a send comes from decides how it joins the interval:

* from an agent processing an event: straight into the interval; the barrier cannot pass
  while the event is in hand;
* from a task the agent spawned, while the agent still holds that event (``gather`` of
  sends): the send holds the event's place in flight until it returns, so the barrier
  waits for it;
* from a task spawned for an event the agent already finished: refused with
  :class:`OutsideEventError`, and the worker stops (its offset may have committed);
* from anywhere else (no event): it waits for a running commit (the lock) and joins the
  open interval; if that interval aborts, the record is gone (at most once).

An interval may take events while the one before it still commits (the commit reopens
dispatch once it has sealed its interval). Its records collect in held batches; its
transaction begins, and the batches go to the producer, only once the previous EndTxn has
returned (:meth:`Sender.allow_begin`).

A send that fails after it touched the interval (a refused batch) poisons the interval:
it aborts even if the agent catches the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eoflow._settings import Settings
from eoflow._stream import Event, InFlight, Source, current_event, current_stream
from eoflow._transport.base import ConsumedRecord, Producer, TopicPartition
from eoflow._transport.batching import BATCH_OVERHEAD, OutputBatches, Partitioner, record_size
from eoflow.errors import (
    AgentError,
    OutsideEventError,
    RecordRejectedError,
    RecordTooLargeError,
    SerializationError,
    TransportError,
)

from .interval import Interval
from .lifecycle import IntervalState
from .poison import Origin

__all__ = ["DeadLetter", "Sender"]

log = logging.getLogger(__name__)

#: Errors raised before a record touched the interval: the agent may catch them.
_REFUSED_UP_FRONT = (RecordTooLargeError, RecordRejectedError, SerializationError,
                     OutsideEventError)
#: Bytes kept of an error message in a dead letter's header.
ERROR_HEADER_BYTES = 4000


@dataclass(frozen=True)
class DeadLetter:
    """A record that goes to the dead-letter topic instead of its agent."""

    record: ConsumedRecord
    agent: str
    error: str
    #: True when the agent kept raising; False when the record could not be decoded.
    agent_failed: bool = False


class Sender:
    """Adds records to the open interval's transaction; replaces intervals on request."""

    def __init__(self, settings: Settings, producer: Producer, partitioner: Partitioner,
                 max_bytes: Mapping[str, int], lock: asyncio.Lock, in_flight: InFlight,
                 on_failure: Callable[[BaseException, bool], None]) -> None:
        self._settings = settings
        self._producer = producer
        self._partitioner = partitioner
        self._limits = max_bytes
        self._lock = lock
        self._in_flight = in_flight
        #: ``(error, fatal)``: wake the control loop to abort the interval, or to stop.
        self._on_failure = on_failure
        self._beginning = asyncio.Lock()
        #: Clear while a commit's EndTxn is outstanding: no transaction may begin.
        self._may_begin = asyncio.Event()
        self._may_begin.set()
        self.interval = self.new_interval()

    def new_interval(self, *, careful: bool = False) -> Interval:
        """Install (and return) a new, idle interval."""
        self.interval = Interval(OutputBatches(self._producer, self._partitioner, self._limits),
                                 careful=careful)
        return self.interval

    @property
    def accepts(self) -> bool:
        """Whether the current interval takes events (its transaction may not have begun:
        its records wait in held batches)."""
        return self.interval.accepts

    @property
    def holds_work(self) -> bool:
        """Whether the current interval holds records not committed yet: its transaction
        is open, or records wait for it to begin."""
        interval = self.interval
        return interval.is_open or (interval.state.is_(IntervalState.IDLE)
                                    and interval.batches.open_count > 0)

    def hold_begin(self) -> None:
        """A commit is about to send its EndTxn: the next transaction waits for it."""
        self._may_begin.clear()

    def allow_begin(self) -> None:
        """The commit ended (EndTxn returned, or the interval aborted)."""
        self._may_begin.set()

    async def begin(self) -> None:
        """Open the interval's transaction if it is not open yet (lazily, on first use),
        once the previous interval's EndTxn has returned.

        The dispatcher and a timer run may both be first; beginning takes a round trip,
        so the second caller waits for the first instead of beginning twice.
        """
        interval = self.interval
        if not interval.state.is_(IntervalState.IDLE):
            return
        async with self._beginning:
            await self._may_begin.wait()
            if interval is not self.interval or not interval.state.is_(IntervalState.IDLE):
                return
            if self._settings.exactly_once:
                await self._producer.begin()
            interval.state.to(IntervalState.OPEN)
            interval.started = time.monotonic()  # deadlines count from the transaction

    async def start(self) -> None:
        """Begin the interval's transaction if records wait for it, and hand over its held
        batches (the tick and a commit that just ended call this; the caller holds the
        lock). A failure poisons the interval (and asks for an abort) instead of raising."""
        interval = self.interval
        try:
            if interval.batches.held:
                if not interval.batches.open_count:
                    return
                if not await self._opened(interval):
                    return
                await interval.batches.release()
            await interval.batches.hand_over_open()
        except TransportError as exc:
            interval.poison(exc)
            self._on_failure(exc, False)

    # -- RuntimeHooks.send_nowait and send ----------------------------------------------
    def send_nowait(self, topic: str, key: bytes | None, value: bytes | None,
                    partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
                    timestamp: float | None = None) -> bool:
        """The common case of :meth:`send`, with no coroutine: a send of an event in hand
        while the interval is open, that fits the open batch of its partition. False, with
        nothing sent, when it needs :meth:`send`; raises what :meth:`send` would raise.

        No await: no barrier can pass meanwhile, whichever task sent it.
        """
        stream, event = current_stream.get(), current_event.get()
        if stream is None or event is None:
            return False
        if not stream.holds(event):
            raise self.outlived(stream, event, f"send to {topic!r}")
        interval = self.interval
        return (interval.accepts and not interval.careful and self._partitioner.knows(topic)
                and interval.batches.add(
                    topic, key, value, partition, headers,
                    (stream.agent, event),  # a PoisonKey only if the send fails
                    event.timestamp if timestamp is None else round(timestamp * 1000)))

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
                   timestamp: float | None = None) -> None:
        """Add a record to the open transaction (see the module docstring for who may).

        The record's timestamp is ``timestamp`` (seconds), else the event's being processed.
        """
        if self.send_nowait(topic, key, value, partition, headers, timestamp):
            return
        stream, event = current_stream.get(), current_event.get()
        stamp = None if timestamp is None else round(timestamp * 1000)
        if stream is None or event is None:
            await self._send_outside_event(stream, topic, key, value, partition, headers,
                                           stamp)
            return
        source = (stream.agent, event)  # a PoisonKey only if the send fails
        if stamp is None:
            stamp = event.timestamp
        if asyncio.current_task() is stream.task:
            await self._send(topic, key, value, partition, headers, source, stamp)
            return
        token = self._in_flight.hold()
        try:
            await self._send(topic, key, value, partition, headers, source, stamp)
        finally:
            self._in_flight.unhold(token)

    async def _send_outside_event(self, stream: Source | None, topic: str, key: bytes | None,
                                  value: bytes | None, partition: int | None,
                                  headers: Sequence[tuple[str, bytes]] | None,
                                  stamp: int | None) -> None:
        """A send with no event in hand: a timer's run, or code outside any agent."""
        if stream is not None and stream.participating():
            await self._participant_send(stream, topic, key, value, partition, headers, stamp)
            return
        async with self._lock:
            await self._send(topic, key, value, partition, headers, None, stamp)

    async def _participant_send(self, scope: Source, topic: str, key: bytes | None,
                                value: bytes | None, partition: int | None,
                                headers: Sequence[tuple[str, bytes]] | None,
                                stamp: int | None) -> None:
        """A timer's send: its run holds a place in the interval, so no lock is needed;
        a task it spawned holds one more until the send returns."""
        if asyncio.current_task() is scope.task:
            await self._send(topic, key, value, partition, headers, None, stamp)
            return
        token = self._in_flight.hold()
        try:
            await self._send(topic, key, value, partition, headers, None, stamp)
        finally:
            self._in_flight.unhold(token)

    def outlived(self, stream: Source, event: Event[Any, Any],
                 what: str) -> OutsideEventError:
        """Refuse ``what`` of a task that outlived its event; stop the worker."""
        error = OutsideEventError(
            f"{what} from a task spawned by agent {stream.agent!r} after the agent finished "
            f"{event.describe()}: the event's offset may already be committed, so this "
            "cannot be exactly once. Await such tasks (e.g. asyncio.gather) before taking "
            "the next event.")
        self._on_failure(error, True)
        return error

    async def _send(self, topic: str, key: bytes | None, value: bytes | None,
                    partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
                    source: Origin | None, timestamp_ms: int | None) -> None:
        interval = self.interval  # an abort during an await must not move us to the next
        try:
            if self._partitioner.knows(topic):  # held until the transaction begins
                batches = interval.batches
                if interval.careful or not batches.add(topic, key, value, partition, headers,
                                                       source, timestamp_ms):
                    await batches.append(topic, key, value, partition, headers, source,
                                         alone=interval.careful, timestamp_ms=timestamp_ms)
            elif await self._opened(interval):
                fut = await self._producer.send(topic, value, key, partition, headers,
                                                timestamp_ms)
                interval.sends.append((fut, source))
        except _REFUSED_UP_FRONT:
            raise
        except TransportError as exc:
            interval.poison(exc)
            self._on_failure(exc, False)
            raise

    async def _opened(self, interval: Interval) -> bool:
        """Begin ``interval``'s transaction if it has not begun; False when the interval
        aborts instead (an EndTxn before it failed): nothing may be sent for it, and what
        it would have sent is thrown away with it anyway."""
        if not interval.is_open and interval is self.interval:
            await self.begin()
        return interval.is_open

    async def flush(self) -> None:
        """Hand the open output batches to the producer now (beginning the transaction if
        they wait for it); a failure poisons the interval (and asks for an abort) instead
        of raising. Takes the lock: a commit must see every batch it has to wait for."""
        async with self._lock:
            await self.start()

    def expect(self, partitions: Iterable[TopicPartition]) -> None:
        """Changelog partitions the open interval has written: its transaction adds them
        now, so its commit does not wait for AddPartitionsToTxn (a hint; nothing while the
        transaction has not begun)."""
        if self.interval.is_open:
            self._producer.expect(partitions)

    # -- dead letters ----------------------------------------------------------------------
    async def dead_letter(self, letter: DeadLetter) -> None:
        """Send a poison record to ``{app_id}-dlq`` inside the open transaction.

        The copy keeps the key and as much of the value as the dead-letter topic (and the
        producer's request size) accept; a cut value says so in ``eoflow.truncated``.
        """
        rec = letter.record
        where = f"{rec.topic}[{rec.partition}]@{rec.offset}"
        log.error("dead-lettering %s for agent %s: %s", where, letter.agent, letter.error)
        if self._settings.on_error == "fail":
            error = AgentError if letter.agent_failed else SerializationError
            raise error(f"{where} (key {rec.key!r}) failed in agent {letter.agent}: "
                        f"{letter.error}; on_error='fail' stops the worker")
        headers = [("eoflow.topic", rec.topic.encode()),
                   ("eoflow.partition", str(rec.partition).encode()),
                   ("eoflow.offset", str(rec.offset).encode()),
                   ("eoflow.agent", letter.agent.encode()),
                   ("eoflow.error", letter.error.encode()[:ERROR_HEADER_BYTES])]
        key, value = rec.key, rec.value
        limit = min(self._limits.get(self._settings.dlq_topic, self._producer_limit()),
                    self._producer_limit()) - BATCH_OVERHEAD
        if record_size(key, value, headers) > limit:
            key, value, headers = _truncate(key, value, headers, limit)
            log.warning("dead letter of %s truncated to fit %s (%d bytes)", where,
                        self._settings.dlq_topic, limit)
        interval = self.interval
        if not await self._opened(interval):
            return
        try:
            fut = await self._producer.send(self._settings.dlq_topic, value, key, None, headers)
        except TransportError as exc:
            interval.poison(exc)
            raise
        interval.sends.append((fut, None))

    def _producer_limit(self) -> int:
        return int(getattr(self._producer, "max_request_size", 1 << 30))


def _truncate(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]],
              limit: int) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Cut the value (and, if it alone is too large, the key) so the record fits ``limit``;
    headers say how long each was."""
    key = key or b""
    marks = [*headers, ("eoflow.truncated", str(len(value or b"")).encode())]
    room = limit - record_size(key, b"", marks)
    if room >= 0:
        return key, (value or b"")[:room], marks
    marks.append(("eoflow.key_truncated", str(len(key)).encode()))
    return key[:max(0, limit - record_size(b"", b"", marks))], b"", marks
