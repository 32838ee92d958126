"""Topic administration: create what the app declares, refuse silent mismatches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from eoflow.errors import TopicMismatchError, TransportError

__all__ = ["TopicSpec", "Topics", "delete_records", "ensure_topics"]

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
#: Kafka's default message.max.bytes, used if a topic's limit cannot be read.
DEFAULT_MAX_MESSAGE_BYTES = 1048588
#: Kafka's default delete.retention.ms (one day), in seconds.
DEFAULT_DELETE_RETENTION = 86400.0
#: Kafka's default retention.ms (seven days).
DEFAULT_RETENTION_MS = 7 * 86400 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """A topic the app needs: name, partition count and topic configs."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """What the broker says about the app's topics."""

    partitions: dict[str, int]
    #: ``max.message.bytes`` per topic: the largest record batch the broker accepts.
    max_bytes: dict[str, int]
    #: ``delete.retention.ms`` per topic, in seconds: how long a compacted topic keeps
    #: tombstones.
    delete_retention: dict[str, float] = field(default_factory=dict)
    #: ``retention.ms`` per topic (-1: kept until deleted).
    retention_ms: dict[str, int] = field(default_factory=dict)


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], replication_factor: int,
                        *, timeout: float = 30.0,
                        client_options: Mapping[str, Any] | None = None) -> Topics:
    """Create missing topics; return their partition counts and size limits.

    Retries for up to ``timeout`` seconds while the cluster answers with retriable errors
    (a node down, a leader or the controller moving): aiokafka's admin client sends each
    request to a random known node, dead ones included until the controller fences them.
    Raises :class:`TopicMismatchError` when a topic exists with another partition count
    than its spec asks for.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.2
    while True:
        try:
            existing, configs = await _describe_or_create(
                bootstrap, specs, replication_factor, timeout, client_options or {})
            break
        except (TopicMismatchError, TransportError):
            raise
        except Exception as exc:
            if not _retriable(exc) or loop.time() + delay > deadline:
                raise TransportError(
                    f"cannot create or describe topics at {bootstrap}: {exc!r}") from exc
            log.warning("creating or describing topics at %s: %r; retrying in %.1fs",
                        bootstrap, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    for spec in specs:
        found = existing.get(spec.name)
        if found is not None and found != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name!r} exists with {found} partitions but the app declares "
                f"{spec.partitions}; declare partitions={found}, or recreate the topic (its "
                "data, committed offsets and any table built from it belong together)")
    return _topics(existing, configs)


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.TimeoutError) or (
        isinstance(exc, kerr.KafkaError) and bool(getattr(exc, "retriable", False)))


async def _describe_or_create(bootstrap: str, specs: list[TopicSpec], replication_factor: int,
                              timeout: float, client_options: Mapping[str, Any]
                              ) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """One try, with a new admin client (so its metadata is fresh)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                                **client_options)
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = await _partition_counts(admin, [s.name for s in specs])
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await _create(admin, missing, replication_factor)
            existing.update(await _wait_visible(admin, [s.name for s in missing], timeout))
        configs = await _topic_configs(admin, [s.name for s in specs])
    finally:
        await admin.close()
    return existing, configs


#: The topic configs eoflow reads (see :class:`Topics`).
_READ_CONFIGS = ("max.message.bytes", "delete.retention.ms", "retention.ms")


async def _topic_configs(admin: AIOKafkaAdminClient,
                         names: list[str]) -> dict[str, dict[str, str]]:
    """The configs of :data:`_READ_CONFIGS` each topic has (none where unreadable)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name,
                                dict.fromkeys(_READ_CONFIGS))
                 for name in sorted(set(names))]
    found: dict[str, dict[str, str]] = {name: {} for name in names}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            if not _config_answer_usable(resource):
                continue
            for entry in resource.get("config_entries") or ():
                name, value = entry["config_names"], entry["config_value"]
                if value and name in _READ_CONFIGS:
                    found.setdefault(resource["resource_name"], {})[name] = str(value)
    return found


def _topics(partitions: dict[str, int], configs: dict[str, dict[str, str]]) -> Topics:
    def read(name: str, config: str, default: float) -> float:
        value = configs.get(name, {}).get(config)
        return default if value is None else float(value)

    return Topics(
        partitions,
        {n: int(read(n, "max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)) for n in configs},
        {n: read(n, "delete.retention.ms", DEFAULT_DELETE_RETENTION * 1000) / 1000
         for n in configs},
        {n: int(read(n, "retention.ms", DEFAULT_RETENTION_MS)) for n in configs})


def _config_answer_usable(resource: Mapping[str, Any]) -> bool:
    """Whether one DescribeConfigs answer carries the topic's configs.

    A node that has not yet applied the metadata of a topic created a moment ago answers
    ``UNKNOWN_TOPIC_OR_PARTITION``: that (and any other retriable error) is raised, so that
    :func:`ensure_topics` asks again rather than taking Kafka's defaults for a topic whose
    limits may differ. A lasting refusal (no DescribeConfigs permission) falls back to the
    defaults, with a warning naming the topic.
    """
    code = resource.get("error_code", 0)
    if not code:
        return True
    error = kerr.for_code(code)
    name = resource.get("resource_name")
    if error.retriable:
        raise error(f"describing the configs of topic {name!r}: "
                    f"{resource.get('error_message') or error.__name__}")
    log.warning("cannot read the configs of topic %r (%s: %s); assuming Kafka's defaults "
                "for %s", name, error.__name__, resource.get("error_message"),
                ", ".join(_READ_CONFIGS))
    return False


async def delete_records(bootstrap: str, before: Mapping[Any, int], *,
                         client_options: Mapping[str, Any] | None = None) -> None:
    """Delete each partition's records before the given offset (``DeleteRecords``).

    Raises :class:`TransportError` naming the partitions when the cluster refuses.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                                **dict(client_options or {}))
    try:
        await admin.start()
        await admin.delete_records({tp: RecordsToDelete(offset) for tp, offset in before.items()})
    except Exception as exc:
        where = ", ".join(f"{tp.topic}[{tp.partition}] before {offset}"
                          for tp, offset in sorted(before.items()))
        raise TransportError(f"deleting records of {where} at {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def list_topics(bootstrap: str, *,
                      client_options: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Every topic of the cluster (internal ``__`` ones left out) with its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                                **dict(client_options or {}))
    try:
        await admin.start()
        names = [n for n in await admin.list_topics() if not n.startswith("__")]
        return await _partition_counts(admin, names) if names else {}
    except TransportError:
        raise
    except Exception as exc:
        raise TransportError(f"listing the topics at {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in await admin.describe_topics(sorted(set(names))):
        if topic["error_code"] == 0 and topic["partitions"]:
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str],
                        timeout: float) -> dict[str, int]:
    """Metadata lags CreateTopics: wait until every new topic shows its partitions."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        counts = await _partition_counts(admin, names)
        if len(counts) == len(set(names)):
            return counts
        if asyncio.get_running_loop().time() > deadline:
            raise TransportError(f"topics {sorted(set(names) - set(counts))} were created but "
                                 f"did not appear in metadata within {timeout}s")
        await asyncio.sleep(0.1)


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec],
                  replication_factor: int) -> None:
    new = [NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config)
           for s in specs]
    response = await admin.create_topics(new, timeout_ms=15000)
    for name, code, *rest in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise TransportError(f"creating topic {name!r} failed: error {code} {rest}")
        if code == 0:
            log.info("created topic %s", name)
