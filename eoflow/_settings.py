"""The one frozen, validated settings object, built once and passed down explicitly."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from eoflow._security import (
    Credentials,
    OAuthCredentials,
    SASLCredentials,
    SSLCredentials,
    client_kwargs,
    credentials_from_env,
)
from eoflow.errors import ConfigurationError

__all__ = ["COMPRESSION_TYPES", "ENV_PREFIX", "Guarantee", "Settings", "parse_broker",
           "settings_from_env"]

Guarantee = Literal["exactly_once", "at_least_once"]
#: Compression codecs of Kafka's producer (None: no compression).
COMPRESSION_TYPES = (None, "gzip", "snappy", "lz4", "zstd")
_APP_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def parse_broker(broker: str) -> str:
    """``kafka://host:port[;kafka://host2:port]`` or ``host:port,...`` to a bootstrap list."""
    hosts = []
    for part in re.split(r"[;,]", broker):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            scheme, _, part = part.partition("://")
            if scheme != "kafka":
                raise ConfigurationError(f"broker URL {broker!r}: scheme must be kafka://")
        if ":" not in part:
            part += ":9092"
        hosts.append(part)
    if not hosts:
        raise ConfigurationError(f"broker {broker!r} names no host")
    return ",".join(hosts)


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know; validated on construction."""

    app_id: str
    broker: str = "kafka://127.0.0.1:9092"
    processing_guarantee: Guarantee = "exactly_once"
    commit_interval: float = 0.1
    #: Table stores and the instance id; ``./{app_id}-data`` when not given.
    datadir: Path = None  # type: ignore[assignment]
    instance_id: str | None = None
    topic_partitions: int = 8
    replication_factor: int = 1
    max_retries: int = 3
    on_error: Literal["dlq", "fail"] = "dlq"
    session_timeout: float = 10.0
    transaction_timeout: float = 60.0
    max_poll_interval: float = 300.0
    queue_size: int = 1000
    #: How often (seconds) the records of repartition topics that the group consumed and
    #: committed are deleted; 0 keeps them (tools that read them back).
    repartition_purge_interval: float = 30.0
    #: Extra aiokafka settings for the worker's consumers (group consumer and restore
    #: readers), e.g. ``{"fetch_max_bytes": 52428800}``; checked at worker start.
    consumer_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: Extra aiokafka settings for the worker's producer, e.g. ``{"linger_ms": 5}``.
    producer_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: Producer compression: None, "gzip", "snappy", "lz4" or "zstd".
    compression_type: str | None = None
    #: Where a partition without a committed offset starts: "earliest" or "latest".
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: Serve /metrics, /health, /ready, /tables, /status and @app.page views.
    web_enabled: bool = False
    web_host: str = "127.0.0.1"
    #: 0 picks a free port (the chosen one is advertised to the group).
    web_port: int = 6066
    #: The URL other workers use to reach this one (default ``http://{web_host}:{port}``).
    web_url: str | None = None
    #: TLS / SASL credentials for every client (see :mod:`eoflow._security`); from
    #: ``EOFLOW_SASL_*`` / ``EOFLOW_SSL_*`` when not given.
    broker_credentials: Credentials | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not _APP_ID.match(self.app_id):
            raise ConfigurationError(
                f"app id {self.app_id!r} may only contain letters, digits, '.', '_' and '-' "
                "(it names the consumer group and internal topics)")
        if self.processing_guarantee not in ("exactly_once", "at_least_once"):
            raise ConfigurationError(
                f"processing_guarantee={self.processing_guarantee!r}: use 'exactly_once' or "
                "'at_least_once'")
        if not 0 < self.commit_interval < self.transaction_timeout / 2:
            raise ConfigurationError(
                f"commit_interval={self.commit_interval}s must be positive and well below "
                f"transaction_timeout={self.transaction_timeout}s (invariant 9)")
        if self.on_error not in ("dlq", "fail"):
            raise ConfigurationError(f"on_error={self.on_error!r}: use 'dlq' or 'fail'")
        if self.max_retries < 1:
            raise ConfigurationError("max_retries must be at least 1")
        if not self.repartition_purge_interval >= 0:
            raise ConfigurationError(
                f"repartition_purge_interval={self.repartition_purge_interval!r}: use seconds "
                "(> 0), or 0 to keep consumed records")
        parse_broker(self.broker)
        self._check_clients()
        self._check_web()
        if self.broker_credentials is not None and not isinstance(
                self.broker_credentials, SSLCredentials | SASLCredentials | OAuthCredentials):
            raise ConfigurationError(
                f"broker_credentials={self.broker_credentials!r}: use eoflow.SSLCredentials, "
                "eoflow.SASLCredentials or eoflow.OAuthCredentials")
        object.__setattr__(self, "datadir", Path(self.datadir) if self.datadir is not None
                           else Path(f"./{self.app_id}-data"))

    def _check_clients(self) -> None:
        for name in ("consumer_options", "producer_options"):
            options = getattr(self, name)
            if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
                raise ConfigurationError(
                    f"{name}={options!r}: use a dict of aiokafka option names to values")
            object.__setattr__(self, name, MappingProxyType(dict(options)))
        if self.compression_type not in COMPRESSION_TYPES:
            raise ConfigurationError(
                f"compression_type={self.compression_type!r}: use one of "
                f"{', '.join(map(repr, COMPRESSION_TYPES))}")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigurationError(
                f"auto_offset_reset={self.auto_offset_reset!r}: use 'earliest' or 'latest'")

    @property
    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments every client of this app gets (its credentials)."""
        return client_kwargs(self.broker_credentials)

    def _check_web(self) -> None:
        if not isinstance(self.web_port, int) or not 0 <= self.web_port <= 65535:
            raise ConfigurationError(f"web_port={self.web_port!r}: use a port from 0 to 65535")
        if not self.web_host:
            raise ConfigurationError("web_host is empty: use an address such as 127.0.0.1")
        if self.web_url is not None and not re.match(r"^https?://[^/]+", self.web_url):
            raise ConfigurationError(
                f"web_url={self.web_url!r}: use http://host:port, the address other workers "
                "reach this one at")

    @property
    def bootstrap(self) -> str:
        return parse_broker(self.broker)

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    @property
    def dlq_topic(self) -> str:
        return f"{self.app_id}-dlq"

    def changelog_topic(self, table: str) -> str:
        return f"{self.app_id}-{table}-changelog"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with command-line overrides applied (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


#: The prefix of environment variables that set :class:`Settings` fields.
ENV_PREFIX = "EOFLOW_"


def settings_from_env(environ: dict[str, str] | None = None) -> dict[str, object]:
    """Settings given by ``EOFLOW_<FIELD>`` environment variables (``EOFLOW_BROKER``,
    ``EOFLOW_COMMIT_INTERVAL``, ...), converted to the field's type.

    Precedence: an argument given to ``App(...)`` wins over the environment, which wins
    over the default.
    """
    env = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for f in fields(Settings):
        name = ENV_PREFIX + f.name.upper()
        raw = env.get(name)
        if raw is None or f.name in ("app_id", "broker_credentials"):
            continue
        found[f.name] = _from_env(name, str(f.type), raw)
    credentials = credentials_from_env(env)
    if credentials is not None:
        found["broker_credentials"] = credentials
    return found


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _from_env(name: str, kind: str, raw: str) -> object:
    """An environment variable's text as the field's type (``kind`` as annotated)."""
    try:
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind == "bool":
            if raw.strip().lower() in _TRUE + _FALSE:
                return raw.strip().lower() in _TRUE
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("Mapping"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
        if kind.endswith("| None") and raw == "":
            return None
        return raw
    except ValueError:
        expected = {"bool": "true or false", "Path": "a path"}.get(kind) or (
            "a JSON object" if kind.startswith("Mapping") else f"a {kind}")
        raise ConfigurationError(f"{name}={raw!r}: expected {expected}") from None
