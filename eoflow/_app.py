"""The App: a registry of topics, agents and tables. Declarative; no I/O at import time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from eoflow._serde import Codec
from eoflow._settings import Guarantee, Settings
from eoflow._table import Table, TableBackend
from eoflow._topic import Topic
from eoflow.errors import ConfigurationError

if TYPE_CHECKING:
    from eoflow._stream import Stream

__all__ = ["AgentFun", "AgentHandle", "AgentSpec", "App", "RuntimeHooks"]

VT = TypeVar("VT")
AgentFun = Callable[["Stream[Any, Any]"], Awaitable[None]]


class RuntimeHooks(Protocol):
    """What a running worker offers to topics and tables."""

    @property
    def tables(self) -> TableBackend: ...

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Sequence[tuple[str, bytes]] | None,
    ) -> None: ...


@dataclass(frozen=True)
class AgentSpec:
    """An agent as declared: what the worker builds the runtime from."""

    name: str
    fun: AgentFun
    topics: tuple[Topic[Any, Any], ...]
    concurrency: int


class AgentHandle:
    """What ``@app.agent`` returns: the original function plus ``send`` to its topic."""

    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec
        self.__name__ = spec.name
        self.__doc__ = spec.fun.__doc__

    async def send(self, *, key: Any = None, value: Any = None) -> None:
        """Send a record to the agent's (first) source topic."""
        await self.spec.topics[0].send(key=key, value=value)

    def __call__(self, stream: Stream[Any, Any]) -> Awaitable[None]:
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
        """Any :class:`~eoflow.Settings` field can be given; the defaults live there."""
        given = {"broker": broker, "processing_guarantee": processing_guarantee,
                 "commit_interval": commit_interval, "datadir": datadir,
                 "topic_partitions": topic_partitions, "max_retries": max_retries,
                 "on_error": on_error, **settings}
        self.settings = Settings(app_id=id, **{k: v for k, v in given.items()
                                               if v is not None})
        self.topics: dict[str, Topic[Any, Any]] = {}
        self.agents: dict[str, AgentSpec] = {}
        self.tables: dict[str, Table[Any, Any]] = {}
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
    ) -> Topic[Any, Any]:
        """Declare a topic (created at worker start when missing)."""
        topic: Topic[Any, Any] = Topic(
            self, names, partitions=partitions, key_serializer=key_serializer,
            value_serializer=value_serializer, config=config)
        for name in names:
            self.topics[name] = topic
        return topic

    def agent(
        self,
        topic: Topic[Any, Any] | Sequence[Topic[Any, Any]],
        *,
        name: str | None = None,
        concurrency: int = 1,
    ) -> Callable[[AgentFun], AgentHandle]:
        """Register ``fun(stream)`` as an agent over ``topic`` (or several topics)."""
        topics = (topic,) if isinstance(topic, Topic) else tuple(topic)
        if not topics:
            raise ConfigurationError("an agent needs at least one topic")
        if concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")

        def register(fun: AgentFun) -> AgentHandle:
            agent_name = name or f"{fun.__module__}.{fun.__qualname__}"
            if agent_name in self.agents:
                raise ConfigurationError(f"agent {agent_name!r} is declared twice")
            spec = AgentSpec(agent_name, fun, topics, concurrency)
            self.agents[agent_name] = spec
            return AgentHandle(spec)

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
    ) -> Table[Any, VT]:
        """Declare a table backed by ``{app_id}-{name}-changelog``."""
        if name in self.tables:
            raise ConfigurationError(f"table {name!r} is declared twice")
        table: Table[Any, VT] = Table(
            self, name, default=default, partitions=partitions, store=store,
            key_serializer=key_serializer, value_serializer=value_serializer)
        self.tables[name] = table
        return table

    def _require_runtime(self, what: str) -> RuntimeHooks:
        if self._runtime is None:
            raise ConfigurationError(
                f"cannot {what}: no worker of app {self.id!r} is running in this process "
                "(run it with `eoflow worker -A module`)")
        return self._runtime
