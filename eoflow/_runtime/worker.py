"""The worker: builds the runtime from the app's specs and runs it until stopped."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoflow._app import App
from eoflow._security import describe
from eoflow._settings import Settings
from eoflow._stream import InFlight
from eoflow._table import TableBackend
from eoflow._transport.admin import Topics, TopicSpec
from eoflow._transport.base import GroupConsumer, Producer, Transport
from eoflow._transport.batching import Partitioner
from eoflow.errors import ConfigurationError, EoflowError

from .agents import AgentSupervisor
from .commit import Committer
from .dispatcher import Dispatcher
from .lifecycle import Lifecycle, WorkerState
from .poison import PoisonLedger
from .purge import RepartitionPurger
from .rebalance import RebalanceHandler
from .sender import Sender
from .stats import WorkerStats
from .tables import TableManager
from .timers import Timers
from .topology import Plan, discover

__all__ = ["Worker", "load_instance_id"]

log = logging.getLogger(__name__)

#: How long an output may wait in an open batch before it is handed to the producer.
OUTPUT_LINGER = 0.01
#: Share of ``commit_interval`` an interval stays open at least, however long the commit
#: before it took (else a slow commit is followed by commits back to back).
MIN_OPEN_SHARE = 0.5


def next_commit_due(began: float | None, ended: float, interval: float) -> float:
    """When the next commit is due (monotonic seconds): ``interval`` after the last commit
    began, as Kafka Streams counts it, so the commit's own round trips do not stretch
    every interval; but at least ``MIN_OPEN_SHARE`` of an interval after it ended.
    ``began`` is None before the first commit."""
    if began is None:
        return ended + interval
    return max(began + interval, ended + MIN_OPEN_SHARE * interval)


def load_instance_id(datadir: Path, app_id: str) -> str:
    """The instance id kept in the data directory, created on first start.

    A stable id gives a stable ``transactional.id``: a restarted worker fences its own
    zombie and aborts its dangling transaction at once.
    """
    path = datadir / "instance-id"
    if path.exists():
        return path.read_text().strip()
    datadir.mkdir(parents=True, exist_ok=True)
    instance_id = f"{app_id}-{uuid.uuid4().hex[:12]}"
    path.write_text(instance_id + "\n")
    return instance_id


@dataclass
class _Runtime:
    """What topics and tables of the app talk to while the worker runs."""

    sender: Sender
    tables: TableBackend

    def __post_init__(self) -> None:
        # The sender's own methods, not one more call around them (per record).
        self.send_nowait = self.sender.send_nowait

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             partition: int | None, headers: Sequence[tuple[str, bytes]] | None,
             timestamp: float | None = None) -> Coroutine[Any, Any, None]:
        # The sender's coroutine itself, not one more awaited around it.
        return self.sender.send(topic, key, value, partition, headers, timestamp)


class Worker:
    """Runs an app's agents with the commit cycle until :meth:`stop` is called.

    ``transport`` defaults to Kafka at the settings' broker; tests may pass another, and a
    ``clock`` for wall-clock time.
    """

    def __init__(self, app: App, settings: Settings | None = None, *,
                 transport: Transport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.settings = settings or app.settings
        #: Wall-clock time in seconds (windows' ``now()``, timers); tests may move it.
        self.clock = clock
        self.state = Lifecycle.worker()
        self._stop = asyncio.Event()
        self._transport = transport
        self.committer: Committer | None = None
        self.rebalance: RebalanceHandler | None = None
        self.timers: Timers | None = None
        self.purger: RepartitionPurger | None = None
        self._tables: TableManager | None = None
        self._sender: Sender | None = None
        self._dispatcher: Dispatcher | None = None
        self._group: asyncio.TaskGroup | None = None
        #: The topics the worker consumes (its agents' sources and hops), once started.
        self.consumed: list[str] = []
        #: Totals of committed intervals (metrics), and the group consumer once built.
        self.stats = WorkerStats()
        self.consumer: GroupConsumer | None = None
        #: ``time.monotonic()`` of the control loop's last turn (``/health``).
        self.last_tick = time.monotonic()
        #: The web server's address, when ``web_enabled``.
        self.web_url: str | None = None

    @property
    def interval_open(self) -> bool:
        """True while an interval holds work that has not committed or aborted yet."""
        return self._sender is not None and self._sender.holds_work

    @property
    def tables(self) -> TableManager | None:
        """The table partitions this worker owns, once started (committed reads)."""
        return self._tables

    @property
    def dispatcher(self) -> Dispatcher | None:
        return self._dispatcher

    def stop(self) -> None:
        """Ask the worker to commit what it has and stop (safe from a signal handler)."""
        self._stop.set()

    # -- lifecycle ------------------------------------------------------------------
    async def run(self) -> None:
        """Start, process until stopped, commit, stop. Raises on a fatal error."""
        self.state.to(WorkerState.STARTING)
        web = None
        if self.settings.web_enabled:  # first: a port in use fails before any Kafka I/O
            from eoflow._web.server import WebServer

            web = WebServer(self)
            try:
                self.web_url = await web.start()
            except BaseException:
                self.state.to(WorkerState.FAILED)
                raise
        try:
            await self._run(web)
        finally:
            if web is not None:
                await web.close()

    async def _run(self, web: Any) -> None:
        settings = self.settings
        if self._transport is None:
            from eoflow._transport.kafka import KafkaTransport

            self._transport = KafkaTransport(
                settings.bootstrap, settings.client_options,
                consumer_options=settings.consumer_options,
                producer_options=settings.producer_options,
                compression_type=settings.compression_type,
                auto_offset_reset=settings.auto_offset_reset)
        transport = self._transport
        instance_id = settings.instance_id or load_instance_id(settings.datadir, settings.app_id)
        if self.app.patterns:  # pattern subscriptions: the topics that exist now
            self.app.resolve_patterns(await transport.list_topics())
        plans = await discover(self.app)  # before the topics: hops declare theirs
        await transport.check_access(describe(settings.broker_credentials))
        topics = await self._ensure_topics(transport, plans)
        client_id = f"{settings.app_id}-{instance_id}"
        producer = transport.producer(client_id, transactional=settings.exactly_once,
                                      transaction_timeout=settings.transaction_timeout,
                                      client_id=client_id)
        consumer = transport.group_consumer(
            group_id=settings.app_id, instance_id=instance_id, client_id=client_id,
            session_timeout=settings.session_timeout,
            max_poll_interval=settings.max_poll_interval)
        self.consumer = consumer
        if self.web_url is not None:
            consumer.advertise(self.web_url)
        dispatcher, supervisor = self._build(transport, topics, producer, consumer, plans)
        log.info("worker %s of app %s starting (%s, commit every %ss)", instance_id,
                 settings.app_id, settings.processing_guarantee, settings.commit_interval)
        try:
            await producer.start()
            await self._run_tasks(supervisor, dispatcher, consumer, web)
        except BaseException:
            if not self.state.is_(WorkerState.STOPPING):
                self.state.to(WorkerState.FAILED)
            raise
        finally:
            await self._shutdown(consumer, producer)

    def _build(self, transport: Transport, topics: Topics, producer: Producer,
               consumer: GroupConsumer,
               plans: list[Plan]) -> tuple[Dispatcher, AgentSupervisor]:
        """Wire the runtime's parts; each gets what it uses, nothing reaches through."""
        settings = self.settings
        lock = asyncio.Lock()
        in_flight = InFlight()
        poison = PoisonLedger(settings.max_retries)
        failures: list[Committer] = []  # the committer, once built (it takes the failures)

        def failed(error: BaseException, fatal: bool) -> None:
            failures[0].failed(error, fatal)

        tables = self._tables = TableManager(
            settings, self.app.tables, topics.partitions, topics.max_bytes,
            topics.delete_retention, transport.changelog_reader, failed, self.clock)
        sender = self._sender = Sender(settings, producer, Partitioner(topics.partitions),
                                       topics.max_bytes, lock, in_flight, failed)
        specs = [spec for plan in plans for spec in plan.specs]
        self.consumed = sorted({n for spec in specs for t in spec.topics for n in t.names})
        supervisor = AgentSupervisor(specs, in_flight, settings.queue_size,
                                     lambda i, e, x: failures[0].agent_failed(i, e, x),
                                     {plan.spec.name: plan.hops for plan in plans})
        dispatcher = self._dispatcher = Dispatcher(specs, supervisor, poison, begin=sender.begin,
                                accepts=lambda: sender.accepts, dead_letter=sender.dead_letter)
        self.committer = Committer(settings, producer, consumer, sender, dispatcher, supervisor,
                                   tables, poison, lock, self.stats, stop=self._stop)
        failures.append(self.committer)
        self.rebalance = RebalanceHandler(self.committer, dispatcher, tables, consumer,
                                          self._spawn)
        self.timers = Timers(self.app.timers, clock=self.clock, admit=dispatcher.admit,
                             in_flight=in_flight, adopt=supervisor.adopt, failed=failed,
                             assignment=consumer.assignment,
                             leader_topic=self.consumed[0] if self.consumed else None)
        purged = {n for t in self.app.topics.values() if t.purged for n in t.names}
        if purged and settings.repartition_purge_interval > 0:
            committer = self.committer
            self.purger = RepartitionPurger(purged, lambda: committer.committed,
                                            transport.delete_records,
                                            settings.repartition_purge_interval)
        consumer.subscribe(dispatcher.topics, self.rebalance)
        self.app._runtime = _Runtime(sender, tables)
        return dispatcher, supervisor

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._group is None:
            coro.close()
            raise RuntimeError(f"task {name!r} started outside the worker's task group")
        return self._group.create_task(coro, name=name)

    async def _run_tasks(self, supervisor: AgentSupervisor, dispatcher: Dispatcher,
                         consumer: GroupConsumer, web: Any) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                served = None if web is None else group.create_task(web.serve(), name="web")
                await consumer.start()  # assignments may start tasks from here on
                self.state.to(WorkerState.RUNNING)
                supervisor.start(group, lambda: dispatcher.run(consumer))
                assert self.timers is not None and self.rebalance is not None
                timers = group.create_task(self.timers.run(), name="timers")
                purging = None if self.purger is None else group.create_task(
                    self.purger.run(), name="repartition-purge")
                assert self._tables is not None
                views = [group.create_task(view.run(), name=f"global-{name}")
                         for name, view in self._tables.views.items()]
                await self._control_loop(timers)
                await self.rebalance.close()
                for view in views:
                    view.cancel()
                if purging is not None:
                    purging.cancel()
                if served is not None:
                    served.cancel()
                await supervisor.cancel()
        except BaseExceptionGroup as group_error:
            raise _first_cause(group_error) from group_error
        finally:
            self._group = None

    async def _control_loop(self, timers: asyncio.Task[None]) -> None:
        """Commit every ``commit_interval``; abort on failure; final commit on stop."""
        committer, dispatcher, rebalance = self.committer, self._dispatcher, self.rebalance
        assert committer is not None and dispatcher is not None and rebalance is not None
        began: float | None = None
        while True:
            due = next_commit_due(began, time.monotonic(), self.settings.commit_interval)
            stopping = await self._wait_tick(committer, due)
            if committer.fatal is not None:
                raise committer.fatal
            if stopping:
                await rebalance.close()  # an assignment still restoring stops here
                timers.cancel()
                await asyncio.gather(timers, return_exceptions=True)
            async with committer.lock:
                if stopping:  # the final commit must not reopen dispatch behind it
                    dispatcher.hold()
                began = time.monotonic()
                await committer.finish(rewind=True)
            if stopping:
                self.state.to(WorkerState.STOPPING)
                return

    async def _wait_tick(self, committer: Committer, deadline: float) -> bool:
        """Wait for the next commit (due at ``deadline``), a stop or an abort request; True
        when stopping.

        Meanwhile the open output batches go to the producer every ``OUTPUT_LINGER``: at
        least once, outputs become visible when acknowledged and must not wait for the
        commit; exactly once, they stay invisible until EndTxn, but sending them during
        the interval leaves the barrier only the last few milliseconds to flush.
        """
        sender = self._sender
        assert sender is not None
        while True:
            self.last_tick = time.monotonic()
            remaining = max(deadline - time.monotonic(), 0.0)
            timeout = min(remaining, OUTPUT_LINGER)
            if await self._woken(committer.abort_requested, timeout) or timeout >= remaining:
                return self._stop.is_set()
            await sender.flush()
            if self._tables is not None:
                sender.expect(self._tables.written_changelogs())

    async def _woken(self, abort_requested: asyncio.Event, timeout: float) -> bool:
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._stop, abort_requested)]
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)

    async def _shutdown(self, consumer: GroupConsumer, producer: Producer) -> None:
        self.app._runtime = None
        try:
            await asyncio.wait_for(consumer.stop(), 30)
        except Exception as exc:
            log.warning("stopping the consumer: %r", exc)
        await producer.close()
        if self._tables is not None:
            self._tables.close()
        if self.state.is_(WorkerState.STOPPING):
            self.state.to(WorkerState.STOPPED)
        log.info("worker stopped")

    # -- topics ---------------------------------------------------------------------
    async def _ensure_topics(self, transport: Transport, plans: list[Plan]) -> Topics:
        settings = self.settings
        specs: dict[str, TopicSpec] = {}
        for topic in self.app.topics.values():
            for name in topic.names:
                specs[name] = TopicSpec(name, topic.partitions or settings.topic_partitions,
                                        topic.config)
        source_counts = {specs[n].partitions for plan in plans for a in plan.specs
                         for t in a.topics for n in t.names}
        for table in self.app.tables.values():
            partitions = table.partitions or _single(source_counts, table.name)
            if source_counts and partitions not in source_counts:
                raise ConfigurationError(
                    f"table {table.name!r} has {partitions} partitions, but no agent's source "
                    f"topic has that many (they have {sorted(source_counts)}): no event could "
                    "use it without writing keys to the wrong partition. Declare the table "
                    "with its source topic's partition count.")
            specs[settings.changelog_topic(table.name)] = TopicSpec(
                settings.changelog_topic(table.name), partitions,
                {"cleanup.policy": "compact"})
        specs[settings.dlq_topic] = TopicSpec(settings.dlq_topic, 1)
        topics: Topics = await transport.ensure_topics(list(specs.values()),
                                                       settings.replication_factor)
        for topic in self.app.topics.values():
            if not topic.purged:
                continue
            for name in topic.names:
                if topics.retention_ms.get(name, -1) >= 0:
                    log.warning(
                        "repartition topic %r deletes records after retention.ms=%d: a "
                        "record older than that (its event's time) may be deleted before it "
                        "is read. eoflow creates repartition topics with retention.ms=-1 and "
                        "deletes what the group committed; set that on this older topic "
                        "(kafka-configs --alter --entity-type topics --entity-name %s "
                        "--add-config retention.ms=-1)", name, topics.retention_ms[name], name)
        return topics


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed task group: an eoflow error if there is one."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((e for e in leaves if isinstance(e, EoflowError)), leaves[0])


def _single(counts: set[int], table: str) -> int:
    if len(counts) == 1:
        return next(iter(counts))
    raise ConfigurationError(
        f"table {table!r}: the app's source topics have different partition counts "
        f"{sorted(counts)}; say partitions=N for the table (equal to its source topic's)")
