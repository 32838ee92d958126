"""The one frozen, validated settings object, built once and passed down explicitly."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

from eoflow.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "Guarantee", "Settings", "parse_broker", "settings_from_env"]

Guarantee = Literal["exactly_once", "at_least_once"]
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
        parse_broker(self.broker)
        object.__setattr__(self, "datadir", Path(self.datadir) if self.datadir is not None
                           else Path(f"./{self.app_id}-data"))

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
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is None or f.name == "app_id":
            continue
        kind = str(f.type)
        try:
            if kind == "float":
                found[f.name] = float(raw)
            elif kind == "int":
                found[f.name] = int(raw)
            elif kind == "Path":
                found[f.name] = Path(raw)
            else:
                found[f.name] = raw
        except ValueError:
            raise ConfigurationError(
                f"{ENV_PREFIX}{f.name.upper()}={raw!r}: expected a {kind}") from None
    return found
