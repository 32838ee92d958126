"""The commit cycle: the one place where an interval is committed or aborted.

One :class:`Committer` per worker. Its lock makes sure one commit or abort runs at a time
(the commit timer, an agent failure and a rebalance all go through :meth:`finish`, the one
commit-or-abort policy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from eoflow._faults import fault_point
from eoflow._settings import Settings
from eoflow._state import Overlay
from eoflow._stream import Event
from eoflow._transport.base import GroupConsumer, GroupMetadata, Producer, TopicPartition
from eoflow._transport.batching import SentBatch
from eoflow._transport.errors import translate
from eoflow.errors import (
    CommitFailedError,
    ConfigurationError,
    EoflowError,
    ProducerFencedError,
    TransactionAbortedError,
)

from .agents import AgentInstance, AgentSupervisor
from .dispatcher import Dispatcher
from .interval import Interval
from .lifecycle import IntervalState
from .poison import PoisonKey, PoisonLedger
from .sender import Sender
from .stats import WorkerStats
from .tables import TableManager

__all__ = ["MAX_CONSECUTIVE_ABORTS", "Committer"]

log = logging.getLogger(__name__)

#: Consecutive aborted intervals after which the worker gives up (no progress is possible:
#: none of them counted a failure against a record).
MAX_CONSECUTIVE_ABORTS = 20
#: Share of ``transaction_timeout`` (from the interval's start) the barrier may wait.
BARRIER_SHARE = 0.8
#: Longest single try of a recovery step (the broker may be restarting).
STEP_TIMEOUT = 30.0


class Committer:
    """Commits or aborts the open interval; the steps are in :meth:`commit` and
    :meth:`abort`."""

    def __init__(self, settings: Settings, producer: Producer, consumer: GroupConsumer,
                 sender: Sender, dispatcher: Dispatcher, supervisor: AgentSupervisor,
                 tables: TableManager, poison: PoisonLedger, lock: asyncio.Lock,
                 stats: WorkerStats | None = None, stop: asyncio.Event | None = None) -> None:
        self.settings = settings
        self._producer = producer
        self._consumer = consumer
        self._sender = sender
        self._dispatcher = dispatcher
        self._supervisor = supervisor
        self._tables = tables
        self._poison = poison
        self.lock = lock
        #: Set when the worker is asked to stop: recovery retries then give up (below).
        self._stop = stop
        #: The generation the commits fence with; None between revoke and assignment.
        self.group: GroupMetadata | None = None
        #: Committed offsets of the assigned partitions (what an interval that consumed
        #: nothing sends with its TxnOffsetCommit, for the generation check).
        self.committed: dict[TopicPartition, int] = {}
        self.commits = 0
        self.aborts = 0
        #: What committed intervals carried, for the metrics.
        self.stats = stats or WorkerStats()
        self._consecutive_aborts = 0
        self._blamed_before = 0
        self._abort_requested = asyncio.Event()
        #: The interval being committed while the next one takes events (steps 2 to 6).
        self._committing: Interval | None = None
        #: An error that must stop the worker (raised by the control loop).
        self.fatal: BaseException | None = None

    # -- failures reported from elsewhere ---------------------------------------------
    @property
    def abort_requested(self) -> asyncio.Event:
        return self._abort_requested

    def failed(self, error: BaseException, fatal: bool) -> None:
        """A send, a write or an agent failed: abort the interval soon; stop if fatal."""
        if fatal and self.fatal is None:
            self.fatal = error
        self._abort_requested.set()

    def agent_failed(self, instance: AgentInstance, event: Event[Any, Any] | None,
                     exc: BaseException) -> None:
        """An agent raised: count it against its event (or stop: the app is wrong)."""
        if isinstance(exc, ConfigurationError):
            self.failed(exc, True)
            return
        if event is not None:
            self._poison.failed(PoisonKey.of(instance.spec.name, event), exc)
        else:
            log.warning("agent %s failed outside an event: %r", instance.name, exc)
        self._abort_requested.set()

    # -- the one policy -----------------------------------------------------------------
    async def finish(self, *, rewind: bool = True) -> None:
        """Commit the open interval; if that fails, abort it. Caller holds :attr:`lock`.

        The worker's loop and the revoke handler both end intervals here. Raises only what
        must stop the worker: a non-retriable eoflow error (fencing by a newer instance
        included, raised by :meth:`abort`), or too many aborts in a row.
        """
        if self.fatal is not None:
            raise self.fatal
        try:
            await self.commit()
            self._consecutive_aborts = 0
            return
        except EoflowError as exc:
            # ProducerFencedError goes to abort, which tells a fencing by a newer instance
            # (stop) from the broker aborting a timed-out transaction (go on).
            if not exc.retriable and not isinstance(exc, ProducerFencedError):
                raise
            error: BaseException = exc
        except Exception as exc:  # an unexpected error still must not commit
            error = exc
        # An abort that counted a failure against a record is progress (that record is
        # dead-lettered after max_retries): a backlog full of poison must not stop the worker.
        progress = self._poison.blamed > self._blamed_before
        self._blamed_before = self._poison.blamed
        self._consecutive_aborts = 0 if progress else self._consecutive_aborts + 1
        await self.abort(error, rewind=rewind)
        if self._consecutive_aborts > MAX_CONSECUTIVE_ABORTS:
            raise EoflowError(
                f"{self._consecutive_aborts} intervals in a row aborted; stopping. Last "
                f"reason: {error}")

    # -- commit ---------------------------------------------------------------------
    async def commit(self) -> None:
        """Commit the open interval. Caller holds :attr:`lock`.

        1. Barrier: stop dispatch; wait until agents processed every event handed out
           (and sends of tasks they spawned returned), at most until 80% of
           ``transaction_timeout`` after the interval began. Take the offsets; seal the
           table overlays (the stream time's record written into them); begin the
           transaction if the interval has not yet.
        2. Resume: a new interval takes events at once. Its table writes go to overlays
           stacked on the sealed ones, its records to held batches; its transaction
           begins once this EndTxn has returned (invariant 10).
        3. Flush: hand over the interval's output batches, send the sealed overlays'
           changelog records; await and check every send.
        4. Offsets: the processed offsets (+1) with the group's generation (KIP-447); an
           interval that consumed nothing sends the assignment's committed offsets, so a
           zombie's transaction is refused all the same.
        5. Commit: EndTxn(commit) (at-least-once: commit the offsets to the group). Steps
           3 to 5 must end within ``transaction_timeout`` of the interval's start. The
           next interval may begin now; its held batches go to the producer.
        6. Apply: each sealed overlay and its changelog offset into its store, one batch,
           off the event loop; then the next interval's overlays read the store directly.
        Any failure raises; the caller then calls :meth:`abort` (see :meth:`finish`),
        which throws away the next interval's work too.
        """
        interval = self._sender.interval
        began = time.monotonic()
        await self._barrier(interval)
        interval.offsets = self._dispatcher.take_offsets()
        if interval.state.is_(IntervalState.IDLE):
            if not (interval.offsets or interval.batches.open_count
                    or self._tables.has_writes()):  # nothing happened: no transaction
                interval.state.to(IntervalState.DONE)
                self._resume()
                return
            await self._sender.begin()  # records or writes wait for it
        interval.state.to(IntervalState.COMMITTING)
        self._committing = interval
        sealed = self._tables.seal()
        self._sender.hold_begin()
        self._resume()
        t1 = time.monotonic()
        remaining = interval.started + self.settings.transaction_timeout - t1
        try:
            async with asyncio.timeout(max(remaining, 0.001)):
                await self._commit_steps(interval, sealed)
        except TimeoutError:
            raise TransactionAbortedError(
                f"the commit did not finish within transaction_timeout="
                f"{self.settings.transaction_timeout}s of the interval's start (broker or "
                "coordinator unreachable?); the outcome is unknown") from None
        t2 = time.monotonic()
        interval.state.to(IntervalState.APPLYING)
        self.commits += 1
        self.committed.update(interval.offsets)
        self._poison.forget_committed(interval.offsets)
        self._sender.allow_begin()
        await self._sender.start()
        await self._tables.apply(interval.flushed)
        interval.state.to(IntervalState.DONE)
        self._committing = None
        self._dispatcher.relax()
        self.stats.committed(self._dispatcher.taken_counts, interval.produced(),
                             self.settings.dlq_topic, time.monotonic() - began)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("committed %d batches, %d sends, %d partitions: flush+commit %.1fms "
                      "apply %.1fms", len(interval.batches.sent), len(interval.sends),
                      len(interval.offsets), (t2 - t1) * 1e3, (time.monotonic() - t2) * 1e3)

    async def _commit_steps(self, interval: Interval,
                            sealed: list[tuple[str, int, Overlay]]) -> None:
        """Steps 3 to 5 of :meth:`commit`."""
        if interval.failure is not None:
            raise TransactionAbortedError(f"a send of this interval failed: {interval.failure}")
        gone = set(interval.offsets) - self._consumer.assignment()
        if gone:  # never commit outputs without their offsets: refuse the whole interval
            raise CommitFailedError(
                f"this interval processed events of {sorted(map(str, gone))}, no longer "
                "assigned to this worker")
        await interval.batches.flush()
        interval.flushed = await self._tables.flush(sealed, self._producer.send_batches)
        await self._await_sends(interval)
        self._tables.note_offsets(interval.flushed)
        fault_point("before_offsets")
        if self.settings.exactly_once:
            fencing = interval.offsets or {tp: off for tp, off in self.committed.items()
                                           if off >= 0}
            if fencing:
                await self._producer.send_offsets(fencing, self._group())
            fault_point("before_commit")
            await self._producer.commit()
        elif interval.offsets:
            await self._consumer.commit(interval.offsets)
        fault_point("after_commit")

    def _resume(self) -> None:
        """A new interval takes events (its transaction begins when it may)."""
        self._sender.new_interval()
        self._dispatcher.open()

    async def _barrier(self, interval: Interval) -> None:
        await self._dispatcher.close()
        in_flight = self._supervisor.in_flight
        budget = self.settings.transaction_timeout * BARRIER_SHARE
        idle = asyncio.ensure_future(in_flight.wait_idle())
        failed = asyncio.ensure_future(self._abort_requested.wait())
        try:
            await asyncio.wait({idle, failed}, timeout=max(budget - interval.age, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            failed.cancel()
        if self.fatal is not None:
            raise self.fatal
        if self._abort_requested.is_set():
            reason = interval.failure or "an agent raised while processing an event"
            raise TransactionAbortedError(f"aborting the interval: {reason}")
        if in_flight.count:
            self._blame_slow(budget)
            raise TransactionAbortedError(
                f"agents did not finish their events within {BARRIER_SHARE:.0%} of "
                f"transaction_timeout={self.settings.transaction_timeout}s; aborting the "
                "interval")

    def _blame_slow(self, budget: float) -> None:
        """Count a failure against each event held for at least half the barrier's budget:
        that one is slow. Events that merely waited behind it are not blamed."""
        slow = [(instance, event, held) for instance, event, held
                in self._supervisor.held_events() if held >= budget / 2]
        for instance, event, held in slow:
            self._poison.failed(
                PoisonKey.of(instance.spec.name, event),
                TimeoutError(f"agent {instance.name} took more than {held:.1f}s"))
        if not slow:
            log.warning("agents did not finish in time, but no single event was slow: they "
                        "were handed more events than they can process within "
                        f"{budget:.1f}s; handing out fewer per interval")
            self._dispatcher.throttle()

    async def _await_sends(self, interval: Interval) -> None:
        """Invariant 2: every send of the interval succeeded, or the interval aborts."""
        futures = ([fut for fut, _ in interval.sends]
                   + [b.future for b in interval.batches.sent]
                   + self._tables.futures(interval.flushed))
        if futures:
            await asyncio.wait(futures)
        for fut, source in interval.sends:
            exc = fut.exception()
            if exc is not None:
                if source is not None:
                    self._poison.failed(PoisonKey.of(*source), exc)
                raise translate(exc, "delivering a record of this transaction")
        for batch in interval.batches.sent:
            exc = batch.future.exception()
            if exc is not None:
                self._blame_batch(interval, batch, exc)
                raise translate(exc, f"delivering a batch to {batch.topic}[{batch.partition}]")
        for fut in self._tables.futures(interval.flushed):
            exc = fut.exception()
            if exc is not None:
                raise translate(exc, "delivering changelog records")

    def _blame_batch(self, interval: Interval, batch: SentBatch, exc: BaseException) -> None:
        events = {PoisonKey.of(*s) for s in batch.sources if isinstance(s, tuple)}
        if len(events) == 1:
            self._poison.failed(events.pop(), exc)
        elif events:
            log.warning("a batch with records of %d events failed (%r); the retry sends "
                        "each record in a batch of its own to find the event", len(events), exc)
            interval.careful = True  # carried into the next interval by abort

    def _group(self) -> GroupMetadata:
        if self.group is None or not self.group.is_valid():
            raise CommitFailedError(f"no valid group generation to commit with: {self.group}")
        return self.group

    # -- abort ----------------------------------------------------------------------
    async def abort(self, reason: BaseException, *, rewind: bool = True) -> None:
        """Throw the interval away and go back to the last committed state.

        1. Interval → ABORTING (the one committing and the next one, if it took events
           meanwhile); note whether the stores may be behind (the failure came while
           COMMITTING, outcome unknown, or APPLYING, stores not written).
        2. Close dispatch; cancel the dispatcher and every agent; empty their queues.
        3. Discard the dispatched offsets and every table overlay (sealed ones included).
        4. Fenced by a newer instance (a transaction younger than transaction_timeout):
           raise :class:`ProducerFencedError`; the worker stops.
        5. Exactly-once: replace the producer (its InitProducerId aborts the open
           transaction on the broker).
        6. Stores maybe behind: catch them up from their changelogs.
        7. Rewind to the stable committed offsets (skipped on revoke).
        8. A new interval (careful after a failed batch of several events); respawn the
           agents and the dispatcher; reopen dispatch.
        """
        # The interval that failed, and the one after it if it took events meanwhile.
        committing, self._committing = self._committing, None
        failed = committing or self._sender.interval
        intervals = [failed] if committing is None else [committing, self._sender.interval]
        catch_up = any(i.state.is_(IntervalState.COMMITTING, IntervalState.APPLYING,
                                   IntervalState.ABORTING) for i in intervals)
        timed_out = failed.age > self.settings.transaction_timeout
        for interval in intervals:
            if not interval.state.is_(IntervalState.ABORTING):  # else: an abort was interrupted
                interval.state.to(IntervalState.ABORTING)
        # Wake whoever waits to begin the next interval's transaction (the dispatcher may
        # wait there holding what the barrier below waits for): an aborting interval does
        # not begin, and no new one exists before the producer is replaced.
        self._sender.allow_begin()
        self.aborts += 1
        log.warning("aborting the interval: %s", reason)
        await self._dispatcher.close()
        await self._supervisor.cancel()
        self._dispatcher.take_offsets()
        self._tables.discard()
        self._abort_requested.clear()
        if isinstance(reason, ProducerFencedError) and not timed_out:
            raise ProducerFencedError(
                f"transactional id {self._producer.transactional_id!r} was fenced: another "
                "worker with the same instance id has started, so this one stops. Give "
                "every worker its own --instance-id / --datadir.") from reason
        if self.settings.exactly_once:
            await self._retrying("recreating the producer", self._producer.reset)
        if catch_up:
            await self._retrying("catching tables up with their changelogs",
                                 self._tables.catch_up)
        if rewind:
            await self._retrying("rewinding to the committed offsets", self._rewind)
        for interval in intervals:
            interval.state.to(IntervalState.ABORTED)
        self._sender.new_interval(careful=any(i.careful for i in intervals))
        self._supervisor.spawn_all()
        self._dispatcher.open()

    async def _retrying(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a recovery step until it succeeds (the broker may be restarting, or the
        cluster may be unable to take transactions for a while).

        Each try gets ``STEP_TIMEOUT``. An outage does not stop the worker: it retries for
        as long as it lasts, backing off up to 5 s and saying so. Only a stop request ends
        the retries, once ``2 * transaction_timeout`` has passed.
        """
        started = time.monotonic()
        deadline = started + 2 * self.settings.transaction_timeout
        delay = 0.2
        while True:
            try:
                async with asyncio.timeout(max(STEP_TIMEOUT,
                                               self.settings.transaction_timeout + 5)):
                    await step()
                return
            except ProducerFencedError:
                raise
            except Exception as exc:
                now = time.monotonic()
                if now > deadline and self._stop is not None and self._stop.is_set():
                    raise
                level = logging.ERROR if now > deadline else logging.WARNING
                log.log(level, "%s failed (%r) for %.0fs; retrying in %.1fs", what, exc,
                        now - started, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _rewind(self) -> None:
        assigned = sorted(self._consumer.assignment())
        offsets = await self._consumer.committed_offsets(
            assigned, timeout=self.settings.transaction_timeout + 30.0)
        self.committed = dict(offsets)
        self._dispatcher.rewind(offsets)
