"""The App: a registry of topics, agents and tables. Declarative; no I/O at import time."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from eoflow._cron import Cron
from eoflow._serde import Codec
from eoflow._settings import Guarantee, Settings, settings_from_env
from eoflow._table import GlobalTable, SetTable, Table, TableBackend
from eoflow._topic import Topic
from eoflow._windows import Seconds, Window, seconds
from eoflow.errors import ConfigurationError

if TYPE_CHECKING:
    from eoflow._stream import Stream

__all__ = ["AgentFun", "AgentHandle", "AgentSpec", "App", "PageSpec", "RuntimeHooks",
           "TimerSpec"]

VT = TypeVar("VT")
#: The environment variable that puts an app's id and topics under a prefix.
NAMESPACE_ENV = "EOFLOW_NAMESPACE"
#: ``async def agent(stream)``, or an async generator (``yield`` results to its sinks).
AgentFun = Callable[["Stream[Any, Any]"], Any]
#: Where a yielding agent's results go: a topic, another agent, or a callable.
Sink = "Topic[Any, Any] | AgentHandle | Callable[[Any], Any]"


class RuntimeHooks(Protocol):
    """What a running worker offers to topics and tables."""

    @property
    def tables(self) -> TableBackend: ...

    def send_nowait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Sequence[tuple[str, bytes]] | None,
        timestamp: float | None = None,
    ) -> bool:
        """:meth:`send` if it can be done without awaiting (the common case); False, with
        nothing sent, if not."""
        ...

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Sequence[tuple[str, bytes]] | None,
        timestamp: float | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class AgentSpec:
    """An agent as declared: what the worker builds the runtime from."""

    name: str
    fun: AgentFun
    topics: tuple[Topic[Any, Any], ...]
    concurrency: int
    #: Where the results of a yielding agent go (empty: nowhere).
    sink: tuple[Any, ...] = ()

    @property
    def yields(self) -> bool:
        return inspect.isasyncgenfunction(self.fun)

    @property
    def short_name(self) -> str:
        """The name without its module, as topic names use it (``count`` for
        ``apps.wordcount.count``)."""
        return _topic_safe(self.name.rsplit(".", 1)[-1])


@dataclass(frozen=True)
class TimerSpec:
    """A timer, crontab, task or punctuator as declared."""

    name: str
    fun: Callable[..., Any]
    kind: str  # "interval" | "cron" | "task" | "punctuate"
    interval: float = 0.0
    cron: Cron | None = None
    on_leader: bool = False
    topic: Topic[Any, Any] | None = None

    def next_due(self, now: float, *, first: bool = False) -> float:
        """When the next run is due, after one at (or, first, a start at) ``now``."""
        if self.cron is not None:
            return self.cron.next_after(now)
        return now + self.interval


@dataclass(frozen=True)
class PageSpec:
    """A web view declared with ``@app.page``."""

    path: str
    fun: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)


class AgentHandle:
    """What ``@app.agent`` returns: the original function, plus ``send`` to its topic."""

    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec
        self.__name__ = spec.name
        self.__doc__ = spec.fun.__doc__

    async def send(self, key: Any = None, value: Any = None, *, partition: int | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None,
                   timestamp: float | None = None) -> None:
        """Send a record to the agent's (first) source topic, inside the transaction."""
        await self.spec.topics[0].send(key=key, value=value, partition=partition,
                                       headers=headers, timestamp=timestamp)

    async def cast(self, value: Any = None, *, key: Any = None, **options: Any) -> None:
        """Faust's name for a send that expects no reply: the same as :meth:`send`."""
        await self.send(key=key, value=value, **options)

    def test_context(self, **options: Any) -> Any:
        """Faust's ``agent.test_context()``: run the app on the broker-less test driver and
        feed this agent with ``await ctx.put(value, key=...)`` (see
        :class:`eoflow.testing.AgentTestContext`); ``options`` go to the driver."""
        from eoflow._driver import AgentTestContext

        return AgentTestContext(self, **options)

    def __call__(self, stream: Stream[Any, Any]) -> Any:
        return self.spec.fun(stream)

    def __repr__(self) -> str:
        return f"<agent {self.spec.name}>"


class App:
    """An eoflow application.

    ``App("wordcount", broker="kafka://127.0.0.1:9092")`` names the consumer group and the
    prefix of internal topics (changelogs, dead letters). Exactly-once by default.
    """

    def __init__(
        self,
        id: str,
        *,
        broker: str | None = None,
        processing_guarantee: Guarantee | None = None,
        commit_interval: float | None = None,
        datadir: str | Path | None = None,
        topic_partitions: int | None = None,
        max_retries: int | None = None,
        on_error: str | None = None,
        **settings: Any,
    ) -> None:
        """Any :class:`~eoflow.Settings` field can be given; the defaults live there.

        A field not given here is read from ``EOFLOW_<FIELD>`` (``EOFLOW_BROKER``,
        ``EOFLOW_TRANSACTION_TIMEOUT``, ...) when set: argument > environment > default.
        """
        given = {"broker": broker, "processing_guarantee": processing_guarantee,
                 "commit_interval": commit_interval, "datadir": datadir,
                 "topic_partitions": topic_partitions, "max_retries": max_retries,
                 "on_error": on_error, **settings}
        #: ``EOFLOW_NAMESPACE`` (read at declaration) prefixes the app id and every topic
        #: name: the same app, isolated (``eoflow verify`` runs its copy that way).
        self.namespace = os.environ.get(NAMESPACE_ENV, "")
        if self.namespace:
            id = f"{self.namespace}.{id}"
        chosen = {**settings_from_env(), **{k: v for k, v in given.items() if v is not None}}
        self.settings = Settings(app_id=id, **chosen)
        self.topics: dict[str, Topic[Any, Any]] = {}
        #: Topics declared with ``pattern=``: resolved to names at worker start.
        self.patterns: list[Topic[Any, Any]] = []
        self.agents: dict[str, AgentSpec] = {}
        self.tables: dict[str, Table[Any, Any]] = {}
        self.timers: list[TimerSpec] = []
        self.pages: list[PageSpec] = []
        self._runtime: RuntimeHooks | None = None

    @property
    def id(self) -> str:
        return self.settings.app_id

    def topic(
        self,
        *names: str,
        partitions: int | None = None,
        key_serializer: str | Codec = "raw",
        value_serializer: str | Codec = "json",
        config: dict[str, str] | None = None,
        key_type: type | None = None,
        value_type: type | None = None,
        pattern: str | None = None,
        timestamp_extractor: Callable[[Any], Any] | str | None = None,
    ) -> Topic[Any, Any]:
        """Declare a topic (created at worker start when missing).

        ``key_type`` / ``value_type`` (an :class:`eoflow.Record`, a dataclass, a pydantic
        model, ``str``, ``int``...) encode and check keys and values; a record that does not
        decode or validate is dead-lettered with the reason. ``pattern=`` (a regular
        expression matching whole names) subscribes to every existing topic it matches
        when the worker starts, as Faust's ``app.topic(pattern=...)``; a source only.

        ``timestamp_extractor`` (a field name, or a function of the decoded value returning
        a datetime or seconds since the epoch) gives each record's event time in place of
        its Kafka timestamp: windows, stream time and the timestamps of what is sent while
        the record is processed follow it. A record it cannot read is dead-lettered."""
        if self.namespace:
            names = tuple(n if n.startswith(f"{self.namespace}.") else f"{self.namespace}.{n}"
                          for n in names)
            if pattern is not None:
                pattern = rf"{re.escape(self.namespace)}\.(?:{pattern})"
        topic: Topic[Any, Any] = Topic(
            self, names, partitions=partitions, key_serializer=key_serializer,
            value_serializer=value_serializer, config=config, key_type=key_type,
            value_type=value_type, pattern=pattern, timestamp_extractor=timestamp_extractor)
        if pattern is not None:
            self.patterns.append(topic)
        for name in names:
            self.topics[name] = topic
        return topic

    def resolve_patterns(self, existing: dict[str, int]) -> None:
        """Give every ``pattern=`` topic the existing topics it matches (worker start)."""
        for topic in self.patterns:
            topic.resolve(existing)
            for name in topic.names:
                self.topics[name] = topic

    def agent(
        self,
        topic: Topic[Any, Any] | Sequence[Topic[Any, Any]] | None = None,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: Sequence[Any] = (),
    ) -> Callable[[AgentFun], AgentHandle]:
        """Register ``fun(stream)`` as an agent over ``topic`` (or several topics).

        Without a topic the agent gets its own, ``{app_id}-{agent}`` (feed it with
        ``agent.send``). An agent written as an async generator forwards what it yields to
        every ``sink`` (a topic, another agent, or a callable), inside the transaction.
        """
        topics = () if topic is None else (topic,) if isinstance(topic, Topic) else tuple(topic)
        if concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        sinks = tuple(sink)
        for target in sinks:
            if not isinstance(target, Topic | AgentHandle) and not callable(target):
                raise ConfigurationError(
                    f"sink {target!r}: use a topic, an agent or a callable")

        def register(fun: AgentFun) -> AgentHandle:
            agent_name = name or f"{fun.__module__}.{fun.__qualname__}"
            _check_agent_shape(agent_name, fun, sinks)
            if agent_name in self.agents:
                raise ConfigurationError(f"agent {agent_name!r} is declared twice")
            short = _topic_safe(agent_name.rsplit(".", 1)[-1])
            clash = [s.name for s in self.agents.values() if s.short_name == short]
            if clash:
                raise ConfigurationError(
                    f"agents {clash[0]!r} and {agent_name!r} share the short name {short!r} "
                    "that names their topics; give one of them name=...")
            own = topics or (self.topic(f"{self.id}-{short}"),)
            spec = AgentSpec(agent_name, fun, own, concurrency, sinks)
            self.agents[agent_name] = spec
            return AgentHandle(spec)

        return register

    # -- timers ------------------------------------------------------------------------
    def timer(self, interval: Seconds, *, on_leader: bool = False,
              name: str | None = None) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """Run ``async def fn()`` every ``interval`` (seconds or a timedelta), inside the
        transaction of the interval it runs in; ``on_leader`` runs it on one worker only."""
        every = seconds(interval, "timer interval")
        return self._timer("interval", name, on_leader, interval=every)

    def crontab(self, cron: str, *, timezone: str | None = None, on_leader: bool = False,
                name: str | None = None) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """Run ``async def fn()`` on a cron schedule (``"*/5 * * * *"``) in ``timezone``."""
        return self._timer("cron", name, on_leader, cron=Cron(cron, timezone))

    def task(self, fun: Callable[[], Any] | None = None, *, on_leader: bool = False) -> Any:
        """Run ``async def fn()`` once, when the worker has its first assignment."""
        decorator = self._timer("task", None, on_leader)
        return decorator if fun is None else decorator(fun)

    def punctuate(self, topic: Topic[Any, Any], every: Seconds, *, name: str | None = None,
                  on: str = "wall_clock") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Run ``async def fn(partition)`` every ``every`` of the wall clock for each
        assigned partition of ``topic``, with that partition's table context: its table
        writes are exactly once.

        ``on="stream_time"``: run ``async def fn(partition, until)`` once for each slice
        of event time ``[k * every, until = (k + 1) * every)`` in which the partition had
        events, when its stream time reaches ``until``: inside the transaction of the
        event that moved it there (as Kafka Streams' stream-time punctuation, it runs only
        when events arrive).
        """
        interval = seconds(every, "punctuate every")
        if on == "stream_time":
            return self._stream_time_punctuator(topic, interval, name)
        if on != "wall_clock":
            raise ConfigurationError(
                f"@app.punctuate(on={on!r}): on is 'wall_clock' or 'stream_time'")
        return self._timer("punctuate", name, False, interval=interval, topic=topic)

    def _stream_time_punctuator(self, topic: Topic[Any, Any], every: float,
                                name: str | None) -> Callable[[Any], Any]:
        """A stream-time punctuator is an agent on ``topic`` that marks, per partition, the
        tumbling window of ``every`` of each event's time; the close of a window (exactly
        once, in the transaction of the event that moved stream time past it) calls it."""
        def register(fun: Any) -> Any:
            full = _timer_name("punctuate", name, fun)
            if len(inspect.signature(fun).parameters) != 2:
                raise ConfigurationError(
                    f"@app.punctuate(on='stream_time'): {fun.__qualname__} takes "
                    "(partition, until), the partition and the end of the slice of event "
                    "time that stream time passed")

            async def close(partition: int, window: Window, _: Any) -> None:
                await fun(partition, window.end)

            marks = self.Table(f"{_topic_safe(full.rsplit('.', 1)[-1])}-stream-time",
                               default=int, partitions=topic.partitions
                               ).tumbling(every, on_window_close=close)

            async def advance(stream: Any) -> None:
                async for event in stream.events():
                    marks[event.partition] = 1

            self.agent(topic, name=f"{full}-stream-time")(advance)
            return fun

        return register

    def _timer(self, kind: str, name: str | None, on_leader: bool,
               **options: Any) -> Callable[[Any], Any]:
        def register(fun: Any) -> Any:
            timer_name = _timer_name(kind, name, fun)
            if any(t.name == timer_name for t in self.timers):
                raise ConfigurationError(f"{kind} {timer_name!r} is declared twice")
            self.timers.append(TimerSpec(timer_name, fun, kind, on_leader=on_leader,
                                         **options))
            return fun

        return register

    # -- web ---------------------------------------------------------------------------
    def page(self, path: str, *, methods: Sequence[str] = ("GET",)
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Serve ``fun(request)`` at ``path`` on the worker's web server (``web_enabled``).

        ``request`` is an ``aiohttp.web.Request`` (``request.match_info`` holds ``{name}``
        parts of the path). Return a dict or list (sent as JSON), a str, bytes, or an
        aiohttp response.
        """
        if not path.startswith("/"):
            raise ConfigurationError(f"@app.page({path!r}): a path starts with '/'")

        def register(fun: Callable[..., Any]) -> Callable[..., Any]:
            wanted = tuple(m.upper() for m in methods)
            if any(p.path == path and set(p.methods) & set(wanted) for p in self.pages):
                raise ConfigurationError(f"@app.page({path!r}) is declared twice")
            self.pages.append(PageSpec(path, fun, wanted))
            return fun

        return register

    def Table(
        self,
        name: str,
        *,
        default: Callable[[], VT] | None = None,
        partitions: int | None = None,
        store: str = "rocksdb://",
        key_serializer: str | Codec = "json",
        value_serializer: str | Codec = "json",
        key_type: type | None = None,
        value_type: type | None = None,
        on_window_close: Any = None,
    ) -> Table[Any, VT]:
        """Declare a table backed by ``{app_id}-{name}-changelog``."""
        if name in self.tables:
            raise ConfigurationError(f"table {name!r} is declared twice")
        table: Table[Any, VT] = Table(
            self, name, default=default, partitions=partitions, store=store,
            key_serializer=key_serializer, value_serializer=value_serializer,
            key_type=key_type, value_type=value_type, on_window_close=on_window_close)
        self.tables[name] = table
        return table

    def GlobalTable(self, name: str, **options: Any) -> GlobalTable[Any, Any]:
        """Declare a table every worker reads whole (see :class:`eoflow.GlobalTable`);
        the same options as :meth:`Table`."""
        table: GlobalTable[Any, Any] = self._declare_table(GlobalTable, name, options)
        return table

    def SetTable(self, name: str, **options: Any) -> SetTable[Any]:
        """Declare a table whose values are sets (see :class:`eoflow.SetTable`)."""
        table: SetTable[Any] = self._declare_table(SetTable, name, options)
        return table

    def _declare_table(self, kind: Any, name: str, options: dict[str, Any]) -> Any:
        if name in self.tables:
            raise ConfigurationError(f"table {name!r} is declared twice")
        table = kind(self, name, **options)
        self.tables[name] = table
        return table

    def _require_runtime(self, what: str) -> RuntimeHooks:
        if self._runtime is None:
            raise ConfigurationError(
                f"cannot {what}: no worker of app {self.id!r} is running in this process "
                "(run it with `eoflow worker -A module`)")
        return self._runtime


def _check_agent_shape(name: str, fun: Any, sinks: tuple[Any, ...]) -> None:
    """Refuse at declaration what the worker could not run."""
    if not (inspect.iscoroutinefunction(fun) or inspect.isasyncgenfunction(fun)):
        raise ConfigurationError(
            f"agent {name!r} must be declared with `async def` (a coroutine, or an async "
            f"generator that yields results); got {type(fun).__name__}")
    try:
        inspect.signature(fun).bind(object())
    except TypeError:
        raise ConfigurationError(
            f"agent {name!r} must take exactly one argument, the stream: "
            f"`async def {getattr(fun, '__name__', name)}(stream): ...`") from None
    if sinks and not inspect.isasyncgenfunction(fun):
        raise ConfigurationError(
            f"agent {name!r} has sink=... but never yields: write `yield result` in its loop, "
            "or send to the topic yourself")


def _timer_name(kind: str, name: str | None, fun: Any) -> str:
    """The name of a timer, crontab, task or punctuator; refuses a function that is not
    ``async def``."""
    if not inspect.iscoroutinefunction(fun):
        raise ConfigurationError(f"@app.{kind if kind != 'interval' else 'timer'} "
                                 f"needs an `async def` function, got {fun!r}")
    return name or f"{fun.__module__}.{fun.__qualname__}"


def _topic_safe(name: str) -> str:
    """An agent name as part of a topic name (Kafka allows letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:180] or "agent"
