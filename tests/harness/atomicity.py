"""The cross-partition atomicity check: every transaction is visible whole, or not at all.

``eo_app`` commits, per input, two transactions:

1. ``ingest``: the input's ``echo`` and ``by-key`` records (different partitions, often of
   different topics' leaders) with the input's offset (+1) in ``__consumer_offsets``;
2. ``aggregate``: the ``aggregates`` record of that ``by-key`` record, the table's
   changelog record of the key (the interval's last value) and the ``by-key`` offset.

So, at any moment when no transaction is in flight (a *cut*), for a consumer group's
committed offsets ``O``:

* every processable input below ``O[input partition]`` is in ``echo`` and ``by-key``
  (a poison one in the dead-letter topic), and no input at or above it is in any of them
  (outputs committed without their offsets, or offsets without their outputs, are torn);
* every ``by-key`` record below ``O[by-key partition]`` has its ``aggregates`` record and
  none at or above it has one;
* per key, the last changelog value equals the last emitted aggregate, and every
  changelog value equals the aggregate emitted with the same count (no changelog record
  from an aborted interval, none torn from its aggregate);
* ``echo`` and ``by-key`` hold the same inputs.

:func:`check` applies this to reads the oracle already made (at the end of a run, after
the workers stopped cleanly); :func:`check_cut` reads a cut itself, mid-run, once the
caller has killed every worker and fenced their transactional ids
(:func:`fence_transactional_ids`), so that every transaction is finished. Inputs are
identified by ``(partition, offset)`` in the input topic, as in :mod:`.oracle`.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from eoflow._transport.kit import group_offsets
from eoflow.testing import Record, TopicRead, read_topic

__all__ = ["check", "check_cut", "fence_transactional_ids"]

Src = tuple[int, int]
Offsets = Mapping[tuple[str, int], int]
#: (counter name, number, what, examples) -- the oracle's ``OracleResult.add`` arguments.
Finding = tuple[str, int, str, list[Any]]
COUNTER = "atomicity"


def _echo_srcs(read: TopicRead) -> set[Src]:
    return {(v["p"], v["o"]) for v in (json.loads(r.value or b"null") for r in read.all())}


def _src(record: Record) -> Src:
    v = json.loads(record.value or b"null")
    return (v["src"][0], v["src"][1])


def _dead_srcs(read: TopicRead, input_topic: str) -> set[Src]:
    out = set()
    for r in read.all():
        h = {k: v.decode() for k, v in r.headers or ()}
        if h.get("eoflow.topic") == input_topic:
            out.add((int(h.get("eoflow.partition", -1)), int(h.get("eoflow.offset", -1))))
    return out


def _inputs_vs_offsets(inputs: Sequence[tuple[Src, bool]], offsets: Offsets,
                       input_topic: str, echoed: set[Src], keyed: set[Src],
                       dead: set[Src]) -> list[Finding]:
    torn_below, torn_above = [], []
    for src, poison in inputs:
        below = src[1] < offsets.get((input_topic, src[0]), 0)
        where = {"echo": src in echoed, "by-key": src in keyed, "dlq": src in dead}
        expected = {"echo": below and not poison, "by-key": below and not poison,
                    "dlq": below and poison}
        wrong = sorted(k for k in where if where[k] != expected[k])
        if wrong:
            (torn_below if below else torn_above).append((src, wrong))
    return [
        (COUNTER, len(torn_below), f"{input_topic}: inputs below the committed offset "
         "without all their outputs (offsets committed without outputs)", torn_below),
        (COUNTER, len(torn_above), f"{input_topic}: inputs at or above the committed offset "
         "with outputs (outputs committed without their offsets)", torn_above),
    ]


def _by_key_vs_offsets(by_key: TopicRead, aggregated: set[Src], offsets: Offsets
                       ) -> list[Finding]:
    torn_below, torn_above = [], []
    for r in by_key.all():
        below = r.offset < offsets.get((by_key.topic, r.partition), 0)
        src = _src(r)
        if below and src not in aggregated:
            torn_below.append((r.partition, r.offset, src))
        elif not below and src in aggregated:
            torn_above.append((r.partition, r.offset, src))
    return [
        (COUNTER, len(torn_below), f"{by_key.topic}: records below the committed offset "
         "without their aggregate", torn_below),
        (COUNTER, len(torn_above), f"{by_key.topic}: records at or above the committed "
         "offset with an aggregate", torn_above),
    ]


def _changelog_vs_aggregates(aggregates: TopicRead, changelog: TopicRead) -> list[Finding]:
    """The changelog record of a key commits with the key's last aggregate of the interval."""
    emitted: dict[str, dict[int, dict[str, int]]] = defaultdict(dict)
    last_emitted: dict[str, dict[str, int]] = {}
    for r in aggregates.all():
        v = json.loads(r.value or b"null")
        agg = {k: v[k] for k in ("sum", "count", "min", "max")}
        key = r.key.decode() if r.key else ""
        emitted[key][agg["count"]] = agg
        last_emitted[key] = agg
    orphans, last_differs = [], []
    last_logged: dict[str, dict[str, int] | None] = {}
    for r in changelog.all():
        key = json.loads(r.key or b'""')
        value = None if r.value is None else json.loads(r.value)
        last_logged[key] = value
        if value is not None and emitted.get(key, {}).get(value.get("count")) != value:
            orphans.append((key, r.partition, r.offset, value))
    for key in sorted(last_logged.keys() | last_emitted.keys()):
        if last_logged.get(key) != last_emitted.get(key):
            last_differs.append((key, last_emitted.get(key), last_logged.get(key)))
    return [
        (COUNTER, len(orphans), f"{changelog.topic}: values no committed aggregate has "
         "(a changelog record without its output)", orphans),
        (COUNTER, len(last_differs), f"{changelog.topic}: the last value of a key is not its "
         "last committed aggregate (expected, got)", last_differs),
    ]


def check(inputs: Iterable[tuple[Src, bool]], reads: Mapping[str, TopicRead], *,
          input_topic: str, echo: str, by_key: str, aggregates: str, dlq: str,
          changelog: str, offsets: Offsets | None) -> list[Finding]:
    """Every atomicity finding (``count`` 0 when fine) on reads of a cut.

    ``inputs``: ``((partition, offset), poison)`` of every input record; ``reads``: the
    ``read_committed`` reads of the output topics by name; ``offsets``: the group's
    committed offsets (None skips the checks against offsets).
    """
    echoed = _echo_srcs(reads[echo])
    keyed = {_src(r) for r in reads[by_key].all()}
    aggregated = {_src(r) for r in reads[aggregates].all()}
    only_echo, only_keyed = sorted(echoed - keyed), sorted(keyed - echoed)
    findings: list[Finding] = [
        (COUNTER, len(only_echo), f"inputs in {echo} but not in {by_key}", only_echo),
        (COUNTER, len(only_keyed), f"inputs in {by_key} but not in {echo}", only_keyed),
        *_changelog_vs_aggregates(reads[aggregates], reads[changelog]),
    ]
    if offsets is not None:
        findings += _inputs_vs_offsets(list(inputs), offsets, input_topic, echoed, keyed,
                                       _dead_srcs(reads[dlq], input_topic))
        findings += _by_key_vs_offsets(reads[by_key], aggregated, offsets)
    return findings


async def check_cut(bootstrap: str, topics: Any, poison_of: Any, *,
                    timeout: float = 60.0) -> tuple[list[Finding], list[Finding], int]:
    """Read a cut (every worker stopped, every transaction finished) and check it.

    ``topics``: the run's :class:`.oracle.Topics`; ``poison_of(record) -> bool`` classifies
    an input record. Returns ``(atomicity findings, unfinished findings, inputs read)``.
    """
    input_read = await read_topic(bootstrap, topics.input, committed=False, timeout=timeout)
    names = {"echo": topics.echo, "by_key": topics.by_key, "aggregates": topics.aggregates,
             "dlq": topics.dlq, "changelog": topics.changelog}
    reads: dict[str, TopicRead] = {}
    unfinished: list[Finding] = []
    for name in names.values():
        reads[name] = read = await read_topic(bootstrap, name, timeout=timeout)
        unfinished.append(("unfinished", len(read.unfinished), f"{name}: read_committed "
                           "position never reached the high watermark at the cut",
                           sorted(read.unfinished.items())))
    offsets = await group_offsets(bootstrap, topics.app_id)
    inputs = [((r.partition, r.offset), poison_of(r)) for r in input_read.all()]
    findings = check(inputs, reads, input_topic=topics.input, offsets=offsets, **names)
    return findings, unfinished, len(inputs)


async def fence_transactional_ids(bootstrap: str, transactional_ids: Iterable[str],
                                  timeout: float = 90.0) -> None:
    """InitProducerId for each id, as a restarted worker would: bumps the epoch, which
    aborts the id's open transaction (the broker writes the abort markers)."""
    for tid in sorted(set(transactional_ids)):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid,
                                    request_timeout_ms=30000)
        try:
            await asyncio.wait_for(_init(producer), timeout)
        finally:
            await producer.stop()


async def _init(producer: AIOKafkaProducer) -> None:
    await producer.start()
    await producer.begin_transaction()  # waits for InitProducerId
    await producer.commit_transaction()  # no partitions: nothing is sent
