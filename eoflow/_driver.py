"""The broker-less test driver: an app's own runtime over an in-memory Kafka.

::

    async with TestDriver(app) as driver:
        await driver.send("clicks", key="alice", value={"page": "/"})
        await driver.settle()                      # processed and committed
        assert driver.outputs("click-totals")[0].value == {"page": "/", "total": 1}
        assert driver.table("per-user") == {"alice": 1}
        await driver.crash(at="before_commit")     # kill -9 there, restart from committed state

The worker is the real one (barrier, overlays, commit, abort, restore); only the transport
is the in-memory broker of :mod:`eoflow._transport.memory`, which models transactional
visibility, producer epochs and group generations. Outputs, tables and dead letters are
read as a ``read_committed`` consumer would. A crash kills the worker's clients at once
(no abort, no leaving the group) and starts a new worker with the same data directory,
so the same instance id: it aborts the dead one's transaction and restores the tables.
What a crash cannot undo is Python state outside eoflow (module globals, the test's own
variables): keep state in tables.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from eoflow import _faults
from eoflow._app import App
from eoflow._runtime.timers import Timers
from eoflow._runtime.worker import Worker
from eoflow._settings import Settings
from eoflow._topic import Topic
from eoflow._transport.base import TopicPartition
from eoflow._transport.batching import default_partition
from eoflow._transport.memory import Killed, MemoryBroker, MemoryTransport
from eoflow.errors import ConfigurationError

__all__ = ["AgentTestContext", "Crashed", "ManualClock", "Output", "TestDriver"]


class Crashed(BaseException):
    """A worker was killed at a fault point by :meth:`TestDriver.crash` (not an error)."""


class ManualClock:
    """Wall-clock time that moves only when told (``advance``); starts at ``start``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.now += seconds


@dataclass(frozen=True)
class Output:
    """A committed record, decoded with its topic's serializers where the app declares it."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp: int
    headers: tuple[tuple[str, bytes], ...]


class TestDriver:
    """Runs ``app`` without a broker. Use as ``async with TestDriver(app) as driver``.

    ``datadir`` defaults to a temporary directory (removed on exit); ``commit_interval``
    to 10 ms and ``session_timeout`` (how long a dead worker stays in the group) to 0.5 s
    so tests are quick; ``clock`` to a :class:`ManualClock` that moves only with
    :meth:`advance` (record timestamps, windows and timers follow it). Other keywords are
    settings of the app (``transaction_timeout=...``).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, *, datadir: str | Path | None = None,
                 commit_interval: float = 0.01, session_timeout: float = 0.5,
                 clock: ManualClock | None = None, **settings: Any) -> None:
        self.app = app
        self.clock = clock or ManualClock()
        self.broker = MemoryBroker(clock=self.clock)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if datadir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"eoflow-{app.id}-")
            datadir = self._tmp.name
        # Repartition topics keep consumed records unless a test asks for purging (it runs
        # on the wall clock, and outputs() of a repartition topic would vary with it).
        settings.setdefault("repartition_purge_interval", 0)
        self.settings: Settings = app.settings.with_overrides(
            datadir=Path(datadir), commit_interval=commit_interval,
            session_timeout=session_timeout, **settings)
        self.worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self._transport: MemoryTransport | None = None
        self.crashes = 0

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> TestDriver:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    async def start(self, timeout: float = 10.0) -> None:
        """Start a worker and wait until it is assigned and restored."""
        self._transport = MemoryTransport(self.broker)
        worker = self.worker = Worker(self.app, self.settings, transport=self._transport,
                                      clock=self.clock)
        self._task = asyncio.create_task(worker.run(), name=f"driver-{self.app.id}")
        deadline = time.monotonic() + timeout
        while worker.rebalance is None or worker.rebalance.ready == 0:
            if self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker of {self.app.id!r} did not start in {timeout}s")
            await asyncio.sleep(0.001)

    async def stop(self) -> None:
        """Stop the worker with a final commit; re-raise what made it fail, if anything."""
        worker, task = self.worker, self._task
        self.worker = self._task = None
        _faults.set_hook(None)
        if worker is None or task is None:
            return
        worker.stop()
        await asyncio.wait_for(asyncio.shield(task), 30)
        task.result()

    async def crash(self, at: str | None = None, *, wipe_stores: bool = False,
                    new_instance: bool = False, timeout: float = 10.0) -> None:
        """``kill -9`` the worker, then start a new one from the committed state (same data
        directory, so the same instance id and transactional id).

        ``at`` is None (now) or a fault point of ``eoflow._faults.POINTS``: the worker dies
        when it next gets there. ``during_restore`` kills now, then kills the restart in
        the middle of its restore, then restarts again. ``wipe_stores`` deletes the local
        table stores before the restart, as on a new machine: they are restored from
        their changelogs. ``new_instance`` restarts as another machine would: an empty data
        directory and a new instance id, so nothing aborts the dead worker's open
        transaction but the broker's transaction timeout.
        """
        if self.worker is None:
            raise ConfigurationError("crash(): the driver is not running")
        if at is not None and at not in _faults.POINTS:
            raise ConfigurationError(f"crash(at={at!r}): use one of {_faults.POINTS}")
        if at is None or at == "during_restore":
            await self._kill(None, timeout)
        else:
            await self._kill(at, timeout)
        if new_instance:
            fresh = Path(self.settings.datadir) / f"instance-{self.crashes}"
            self.settings = self.settings.with_overrides(
                datadir=fresh, instance_id=f"{self.settings.app_id}-replacement-{self.crashes}")
        elif wipe_stores or at == "during_restore":
            shutil.rmtree(self.settings.datadir / "tables", ignore_errors=True)
        if at == "during_restore":
            self._arm(at)
            try:
                await self.start(timeout)
            except (Crashed, Killed):
                pass
            except BaseExceptionGroup as group:
                if not group.subgroup((Crashed, Killed)):
                    raise
            else:
                raise TimeoutError("the restart had nothing to restore: no during_restore")
            finally:
                _faults.set_hook(None)
            await self._kill(None, timeout)  # the crashed restart's remains
        await self.start(timeout)

    def _arm(self, at: str) -> None:
        transport = self._transport

        def hook(name: str) -> None:
            if name == at:
                _faults.set_hook(None)
                if transport is not None:
                    transport.kill()
                raise Crashed(at)

        _faults.set_hook(hook)

    async def _kill(self, at: str | None, timeout: float) -> None:
        """Kill the current worker now (``at`` None) or at fault point ``at``; wait for it."""
        task = self._task
        if task is None or self._transport is None:
            return
        if at is None:
            self._transport.kill()
            task.cancel()
        else:
            self._arm(at)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise TimeoutError(f"the worker never reached fault point {at!r} in {timeout}s "
                               "(give it work that passes there)") from None
        except (Crashed, Killed, asyncio.CancelledError):
            pass
        except BaseExceptionGroup as group:
            if not group.subgroup((Crashed, Killed, asyncio.CancelledError)):
                raise
        finally:
            _faults.set_hook(None)
        # A real kill frees everything; here the dead worker's exception and its frames
        # still hold references: drop them.
        del task
        self.worker = self._task = None
        gc.collect()
        self.crashes += 1

    # -- input ---------------------------------------------------------------------
    async def send(self, topic: str, value: Any = None, *, key: Any = None,
                   partition: int | None = None, timestamp: float | None = None,
                   headers: Sequence[tuple[str, bytes]] = ()) -> int:
        """Produce one record (encoded with the topic's serializers); returns its offset.

        ``timestamp`` is in seconds (default: the driver's clock). The topic must be one
        the app declares or creates.
        """
        spec = self._topic(topic)
        key_bytes, value_bytes = spec.encode(key, value) if spec else (key, value)
        count = self.broker.partitions(topic)
        if partition is None:
            partition = 0 if key_bytes is None else default_partition(key_bytes, count)
        stamp = None if timestamp is None else round(timestamp * 1000)
        return self.broker.append(None, 0, topic, partition,
                                  [(key_bytes, value_bytes, stamp, tuple(headers))])

    async def advance(self, seconds: float, *, timeout: float = 10.0) -> None:
        """Move the clock (record timestamps, windows' ``now()``, timers); then wait until
        the timers that came due have run and everything is committed."""
        timers = self.worker.timers if self.worker is not None else None
        if timers is None or not timers.scheduled:
            self.clock.advance(seconds)
            return
        await self._timers_caught_up(timers, timeout)  # started, and done with the present
        self.clock.advance(seconds)
        await self._timers_caught_up(timers, timeout)
        await self.settle(timeout)

    async def _timers_caught_up(self, timers: Timers, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while timers.caught_up_to < self.clock():
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timers still running after {timeout}s")
            await asyncio.sleep(0.002)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every record of every topic the app consumes is processed and its
        interval committed (and no transaction is open)."""
        deadline = time.monotonic() + timeout
        while not self._settled():
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not settled after {timeout}s: {self._lag()}")
            await asyncio.sleep(0.002)

    def _settled(self) -> bool:
        open_interval = self.worker is not None and self.worker.interval_open
        return not open_interval and not self.broker.open_transactions() and not self._lag()

    def _lag(self) -> dict[str, int]:
        lag: dict[str, int] = {}
        group = self.settings.app_id
        for topic in self._consumed():
            for log in self.broker.logs.get(topic, []):
                tp = TopicPartition(topic, log.partition)
                position = max(self.broker.committed(group, [tp])[0][tp], log.log_start)
                visible, _end = log.read(position, 1)
                if visible:
                    lag[f"{topic}[{log.partition}]"] = log.last_stable_offset - position
        return lag

    def _consumed(self) -> list[str]:
        if self.worker is not None and self.worker.consumed:
            return self.worker.consumed
        return sorted({name for spec in self.app.agents.values() for t in spec.topics
                       for name in t.names})

    # -- output ----------------------------------------------------------------------
    def outputs(self, topic: str) -> list[Output]:
        """The committed records of ``topic``, partition by partition, decoded."""
        spec = self._topic(topic)
        out = []
        for log in self.broker.logs.get(topic, []):
            for r in log.read(0, 1 << 62)[0]:
                key, value = r.key, r.value
                if spec is not None:
                    key = None if key is None else spec.key_codec.loads(key)
                    value = None if value is None else spec.value_codec.loads(value)
                out.append(Output(r.topic, r.partition, r.offset, key, value, r.timestamp,
                                  tuple(r.headers)))
        return out

    def values(self, topic: str) -> list[Any]:
        """The decoded values of :meth:`outputs`."""
        return [o.value for o in self.outputs(topic)]

    def table(self, name: str) -> dict[Any, Any]:
        """The committed contents of table ``name``: the fold of its changelog, decoded."""
        table = self.app.tables.get(name)
        if table is None:
            raise ConfigurationError(f"app {self.app.id!r} has no table {name!r}")
        contents: dict[Any, Any] = {}
        for log in self.broker.logs.get(self.settings.changelog_topic(name), []):
            for r in log.read(0, 1 << 62)[0]:
                if r.key is None:
                    continue
                decoded = table.decode_changelog(r.key, r.value)
                if decoded is None:
                    continue
                key, value = decoded
                if value is None:
                    contents.pop(key, None)
                else:
                    contents[key] = value
        if table.windowed is not None:
            return dict(table.windowed.windows_of(contents.items()))
        return contents

    def dead_letters(self) -> list[Output]:
        """Committed records of the dead-letter topic (raw key and value, with headers)."""
        return self.outputs(self.settings.dlq_topic)

    def _topic(self, name: str) -> Topic[Any, Any] | None:
        spec = self.app.topics.get(name)
        if spec is None and name not in self.broker.logs:
            raise ConfigurationError(
                f"topic {name!r} is not declared by app {self.app.id!r} (declared: "
                f"{sorted(self.app.topics)}); declare it with app.topic(...)")
        return spec



class AgentTestContext:
    """Faust's ``agent.test_context()``: the app on the driver, fed through one agent.

    ``await ctx.put(value, key=...)`` sends to the agent's topic, waits until it is
    processed and committed, and returns the input record (with its offset). As in Faust,
    the context feeds one partition (0) unless ``put(partition=...)`` says otherwise, so
    ``ctx.results[offset]`` is what a yielding agent yielded for the input at that offset
    of partition 0; ``ctx.results_at[(partition, offset)]`` works for any partition.
    """

    def __init__(self, agent: Any, **options: Any) -> None:
        self.agent = agent
        self.driver = TestDriver(agent.spec.topics[0].app, **options)
        self.results: dict[int, list[Any]] = {}
        self.results_at: dict[tuple[int, int], list[Any]] = {}
        self._original: Any = None

    async def __aenter__(self) -> AgentTestContext:
        from dataclasses import replace

        from eoflow._stream import current_event

        app, spec = self.driver.app, self.agent.spec
        results, results_at = self.results, self.results_at

        def record(item: Any) -> None:
            event = current_event.get()
            if event is not None:
                results_at.setdefault((event.partition, event.offset), []).append(item)
                if event.partition == 0:
                    results.setdefault(event.offset, []).append(item)

        self._original = spec
        app.agents[spec.name] = replace(spec, sink=(*spec.sink, record))
        try:
            await self.driver.start()
        except BaseException:
            app.agents[spec.name] = spec
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.driver.stop()
        finally:
            self.driver.app.agents[self._original.name] = self._original
            if self.driver._tmp is not None:
                self.driver._tmp.cleanup()

    async def put(self, value: Any = None, *, key: Any = None, partition: int | None = None,
                  timestamp: float | None = None,
                  headers: Sequence[tuple[str, bytes]] = ()) -> Output:
        """Send one record to the agent's topic; return it once processed and committed."""
        topic = self.agent.spec.topics[0].name
        partition = 0 if partition is None else partition
        offset = await self.driver.send(topic, value, key=key, partition=partition,
                                        timestamp=timestamp, headers=headers)
        await self.driver.settle()
        for out in self.driver.outputs(topic):
            if (out.partition, out.offset) == (partition, offset):
                return out
        raise RuntimeError(f"the record sent to {topic} at offset {offset} was not found")
