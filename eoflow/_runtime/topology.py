"""What the worker runs for each declared agent: its hops, learned once at start-up.

``stream.group_by(...)`` and ``stream.through(topic)`` are hops: the records go to a topic
inside the transaction and the agent reads them back from it (after the commit, from
whichever worker owns the partition of their new key), as in Kafka Streams. The worker
learns an agent's hops by running it up to its first iteration over a probe stream
(:func:`eoflow._stream.probe`), so the code before an agent's loop runs once more at
start-up and must have no side effects.

For an agent ``count`` over ``words`` with ``stream.group_by(word_of, name="by_word")``
the worker runs:

* ``count.by_word``: a forwarder over ``words`` that applies the filters written before
  the hop and sends each value to ``{app_id}-count-by_word-repartition`` keyed by
  ``word_of(value)``;
* ``count``: the agent itself, over the repartition topic.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from eoflow._app import AgentSpec, App
from eoflow._stream import Discovered, Hop, Stream, probe
from eoflow._topic import Topic
from eoflow.errors import ConfigurationError

__all__ = ["Plan", "discover"]

log = logging.getLogger(__name__)

#: How long an agent may take to reach its first iteration at start-up.
DISCOVERY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Plan:
    """One declared agent as the worker runs it."""

    spec: AgentSpec  # the agent itself, over the topic of its last hop (or its sources)
    hops: tuple[Hop, ...]
    forwarders: tuple[AgentSpec, ...]  # one per hop, in order

    @property
    def specs(self) -> list[AgentSpec]:
        return [*self.forwarders, self.spec]


async def discover(app: App) -> list[Plan]:
    """Learn every agent's hops and declare their topics; the worker runs these plans."""
    return [await _plan(app, spec) for spec in app.agents.values()]


async def _plan(app: App, spec: AgentSpec) -> Plan:
    hops = await _learn_hops(spec)
    forwarders: list[AgentSpec] = []
    sources = spec.topics
    for hop in hops:
        target = hop.topic or _repartition_topic(app, spec, hop, sources)
        forwarders.append(AgentSpec(f"{spec.name}.{hop.name}", _forwarder(hop, target),
                                    sources, spec.concurrency))
        sources = (target,)
    return Plan(replace(spec, topics=sources), hops, tuple(forwarders))


async def _learn_hops(spec: AgentSpec) -> tuple[Hop, ...]:
    source, stream = probe(spec.name)
    try:
        async with asyncio.timeout(DISCOVERY_TIMEOUT):
            await _run_until_first_step(spec, stream)
    except Discovered:
        return source.found_hops
    except TimeoutError:
        raise ConfigurationError(
            f"agent {spec.name!r} did not start iterating its stream within "
            f"{DISCOVERY_TIMEOUT:.0f}s; the code before its loop runs at start-up and must "
            "not wait") from None
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"agent {spec.name!r} failed before iterating its stream: {exc}. The code before "
            "an agent's loop runs once more at start-up (to learn its group_by/through "
            "hops): keep sends and table writes inside the loop") from exc
    except Exception as exc:
        raise ConfigurationError(
            f"agent {spec.name!r} raised before iterating its stream: {exc!r}") from exc
    return source.found_hops  # the agent returned without iterating


async def _run_until_first_step(spec: AgentSpec, stream: Stream[Any, Any]) -> None:
    result = spec.fun(stream)
    if inspect.isasyncgen(result):
        try:
            await result.__anext__()
        finally:
            await result.aclose()
    else:
        await result


#: Configs of the repartition topics eoflow creates. A record there carries the timestamp
#: of the event it came from, so time-based retention would delete a backfill of old
#: events before the repartitioned agent reads it: records stay until the worker deletes
#: them once consumed and committed (``repartition_purge_interval``), in segments small
#: enough for that to free disk (Kafka Streams' settings).
REPARTITION_CONFIG = {"retention.ms": "-1", "segment.bytes": str(50 * 1024 * 1024)}


def _repartition_topic(app: App, spec: AgentSpec, hop: Hop,
                       sources: tuple[Topic[Any, Any], ...]) -> Topic[Any, Any]:
    name = f"{app.id}-{spec.short_name}-{hop.name}-repartition"
    existing = app.topics.get(name)
    if existing is not None:
        return existing
    counts = {t.partitions for t in sources}
    partitions = hop.partitions or (counts.pop() if len(counts) == 1 else None)
    first = sources[0]
    topic = app.topic(name, partitions=partitions, key_serializer="json",
                      value_serializer=first.value_codec, config=dict(REPARTITION_CONFIG))
    topic.purged = True
    return topic


def _forwarder(hop: Hop, target: Topic[Any, Any]) -> Callable[[Stream[Any, Any]], Any]:
    """The sending side of a hop: filters, then the value to ``target`` under its new key."""
    key_of = hop.key

    async def forward(stream: Stream[Any, Any]) -> None:
        for predicate in hop.filters:
            stream = stream.filter(predicate)
        async for event in stream.events():
            key = event.key if key_of is None else key_of(event.value)
            await target.send(key=key, value=event.value)

    return forward
