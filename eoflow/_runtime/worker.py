"""The worker: builds the runtime from the app's specs and runs it until stopped."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from eoflow._app import App
from eoflow._settings import Settings
from eoflow._transport.admin import Topics, TopicSpec, ensure_topics
from eoflow._transport.consumer import create_group_consumer, subscribe
from eoflow._transport.producer import TransactionalProducer
from eoflow.errors import ConfigurationError, EoflowError, ProducerFencedError

from .agents import AgentSupervisor
from .commit import Committer
from .dispatcher import Dispatcher
from .lifecycle import Lifecycle, WorkerState
from .rebalance import RebalanceHandler
from .stream import InFlight
from .tables import TableManager

__all__ = ["Worker", "load_instance_id"]

log = logging.getLogger(__name__)

#: Consecutive aborted intervals after which the worker gives up (no progress is possible).
MAX_CONSECUTIVE_ABORTS = 20
#: How long an output may wait in an open batch before it is handed to the producer.
OUTPUT_LINGER = 0.01


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


class Worker:
    """Runs an app's agents with the commit cycle until :meth:`stop` is called."""

    def __init__(self, app: App, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or app.settings
        self.state = Lifecycle.worker()
        self._stop = asyncio.Event()
        self.committer: Committer | None = None
        self.rebalance: RebalanceHandler | None = None
        self._tables: TableManager | None = None

    def stop(self) -> None:
        """Ask the worker to commit what it has and stop (safe from a signal handler)."""
        self._stop.set()

    # -- lifecycle ------------------------------------------------------------------
    async def run(self) -> None:
        """Start, process until stopped, commit, stop. Raises on a fatal error."""
        settings = self.settings
        self.state.to(WorkerState.STARTING)
        instance_id = settings.instance_id or load_instance_id(settings.datadir, settings.app_id)
        topics = await self._ensure_topics()
        tables = self._tables = TableManager(
            settings, self.app.tables, self._table_partitions(topics.partitions),
            topics.max_bytes)
        producer = TransactionalProducer(
            settings.bootstrap, f"{settings.app_id}-{instance_id}",
            transactional=settings.exactly_once,
            transaction_timeout_ms=int(settings.transaction_timeout * 1000),
            client_id=f"{settings.app_id}-{instance_id}")
        await producer.start()
        in_flight = InFlight()
        specs = list(self.app.agents.values())
        supervisor = AgentSupervisor(specs, in_flight, settings.queue_size, self._agent_failed)
        dispatcher = Dispatcher(specs, supervisor, begin=self._begin, is_open=self._is_open,
                                dead_letter=self._dead_letter, max_retries=settings.max_retries)
        consumer = create_group_consumer(
            bootstrap=settings.bootstrap, group_id=settings.app_id, instance_id=instance_id,
            client_id=f"{settings.app_id}-{instance_id}",
            session_timeout_ms=int(settings.session_timeout * 1000),
            max_poll_interval_ms=int(settings.max_poll_interval * 1000))
        self.committer = Committer(settings, producer, consumer, dispatcher, supervisor,
                                   tables, topics.partitions, topics.max_bytes)
        self.rebalance = RebalanceHandler(self.committer, consumer, instance_id)
        subscribe(consumer, dispatcher.topics, self.rebalance)
        self.app._runtime = self.committer  # topics and tables talk to it directly
        log.info("worker %s of app %s starting (%s, commit every %ss)", instance_id,
                 settings.app_id, settings.processing_guarantee, settings.commit_interval)
        try:
            await consumer.start()
            self.state.to(WorkerState.RUNNING)
            await self._run_tasks(supervisor, dispatcher, consumer)
        except BaseException:
            if not self.state.is_(WorkerState.STOPPING):
                self.state.to(WorkerState.FAILED)
            raise
        finally:
            await self._shutdown(consumer, producer)

    async def _run_tasks(self, supervisor: AgentSupervisor, dispatcher: Dispatcher,
                         consumer: Any) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                supervisor.start(group, lambda: dispatcher.run(consumer))
                await self._control_loop()
                await supervisor.cancel()
        except BaseExceptionGroup as group_error:
            raise _first_cause(group_error) from group_error

    async def _control_loop(self) -> None:
        """Commit every ``commit_interval``; abort on failure; final commit on stop."""
        committer, rebalance = self.committer, self.rebalance
        assert committer is not None and rebalance is not None
        consecutive_aborts = 0
        while True:
            stopping = await self._wait_tick(committer)
            if rebalance.fatal is not None:
                raise rebalance.fatal
            if stopping:  # the final commit must not reopen dispatch behind it
                committer.dispatcher.hold()
            async with committer.lock:
                try:
                    await committer.commit()
                    consecutive_aborts = 0
                except EoflowError as exc:
                    # ProducerFencedError is not retriable, yet goes to abort: a fencing
                    # after transaction_timeout is the broker aborting a slow interval.
                    if not exc.retriable and not isinstance(exc, ProducerFencedError):
                        raise
                    consecutive_aborts += 1
                    await committer.abort(exc)
                except Exception as exc:  # an unexpected error still must not commit
                    consecutive_aborts += 1
                    await committer.abort(exc)
            if consecutive_aborts > MAX_CONSECUTIVE_ABORTS:
                raise EoflowError(f"{consecutive_aborts} intervals in a row aborted; stopping")
            if stopping:
                self.state.to(WorkerState.STOPPING)
                return

    async def _wait_tick(self, committer: Committer) -> bool:
        """Wait for the next commit, a stop or an abort request; True when stopping.

        Meanwhile the open output batches go to the producer every ``OUTPUT_LINGER``: at
        least once, outputs become visible when acknowledged and must not wait for the
        commit; exactly once, they stay invisible until EndTxn, but sending them during
        the interval leaves the barrier only the last few milliseconds to flush.
        """
        deadline = time.monotonic() + self.settings.commit_interval
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            timeout = min(remaining, OUTPUT_LINGER)
            if await self._woken(committer.abort_requested, timeout) or timeout >= remaining:
                return self._stop.is_set()
            await committer.flush_outputs()

    async def _woken(self, abort_requested: asyncio.Event, timeout: float) -> bool:
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._stop, abort_requested)]
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)

    async def _shutdown(self, consumer: Any, producer: TransactionalProducer) -> None:
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

    # -- callbacks ------------------------------------------------------------------
    async def _begin(self) -> None:
        assert self.committer is not None
        await self.committer.begin()

    def _is_open(self) -> bool:
        return self.committer is not None and self.committer.is_open

    async def _dead_letter(self, letter: Any) -> None:
        assert self.committer is not None
        await self.committer.dead_letter(letter)

    def _agent_failed(self, instance: Any, event: Any, exc: BaseException) -> None:
        assert self.committer is not None
        key = None if event is None else (instance.spec.name, event.topic, event.partition,
                                           event.offset)
        self.committer.agent_failed(key, exc)

    # -- topics ---------------------------------------------------------------------
    async def _ensure_topics(self) -> Topics:
        settings = self.settings
        specs: dict[str, TopicSpec] = {}
        for topic in self.app.topics.values():
            for name in topic.names:
                specs[name] = TopicSpec(name, topic.partitions or settings.topic_partitions,
                                        topic.config)
        source_counts = {specs[n].partitions for a in self.app.agents.values()
                         for t in a.topics for n in t.names}
        for table in self.app.tables.values():
            partitions = table.partitions or _single(source_counts, table.name)
            specs[settings.changelog_topic(table.name)] = TopicSpec(
                settings.changelog_topic(table.name), partitions,
                {"cleanup.policy": "compact"})
        specs[settings.dlq_topic] = TopicSpec(settings.dlq_topic, 1)
        return await ensure_topics(settings.bootstrap, list(specs.values()),
                                   settings.replication_factor)

    def _table_partitions(self, counts: dict[str, int]) -> dict[str, int]:
        return {name: counts[self.settings.changelog_topic(name)] for name in self.app.tables}


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
