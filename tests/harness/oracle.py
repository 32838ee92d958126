"""The exactly-once oracle: reads every output with ``read_committed`` and checks it.

Every input record is identified by ``src = (partition, offset)`` in the input topic (the
app copies it into every output), so a duplicate or a loss is exact even when the driver
had to re-send an input. Checks:

* every topic read reaches its high watermark (every transaction finished);
* ``echo`` and ``by-key`` hold every processable input exactly once, none of the poison
  ones, and keep per-input-partition order;
* the dead-letter topic holds every poison input exactly once and nothing else;
* per key, the emitted ``aggregates`` are exactly the running fold of that key's inputs
  in ``by-key`` order (a double-applied or lost table update shows here);
* the table folded from its changelog, a store restored from scratch with eoflow's own
  restore, and the workers' live stores all equal the fold of all inputs;
* cross-partition atomicity (:mod:`.atomicity`): the outputs of each input, its changelog
  record and its committed offsets are all there or none is (with ``group``, the consumer
  group whose committed offsets are checked against the outputs).

The last two read eoflow's store format: ``restore=False`` and no ``datadirs`` skip them
(for another system under test, e.g. faust-streaming; its changelog fold is still checked).
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoflow._state import RocksDBPartitionStore, StoreIdentity, store_path
from eoflow._state.rocksdb import _open_db, read_identity
from eoflow._transport.kit import group_offsets
from eoflow.errors import StoreCorruptError
from eoflow.testing import Record, TopicRead, read_topic, restore_partition

from . import atomicity
from .app_common import fold
from .driver import POISON_KINDS, Input

__all__ = ["OracleResult", "Topics", "check", "is_poison"]

Src = tuple[int, int]
Agg = dict[str, int]
MAX_LISTED = 10


@dataclass(frozen=True)
class Topics:
    """Names of the topics of one harness app."""

    app_id: str
    prefix: str

    @property
    def input(self) -> str:
        return f"{self.prefix}-input"

    @property
    def echo(self) -> str:
        return f"{self.prefix}-echo"

    @property
    def by_key(self) -> str:
        return f"{self.prefix}-by-key"

    @property
    def aggregates(self) -> str:
        return f"{self.prefix}-aggregates"

    @property
    def dlq(self) -> str:
        return f"{self.app_id}-dlq"

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-aggs-changelog"


@dataclass
class OracleResult:
    records: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    losses: int = 0
    order_violations: int = 0
    aggregate_mismatches: int = 0
    table_mismatches: int = 0
    unfinished: int = 0
    driver_missing: int = 0
    atomicity: int = 0
    violations: list[str] = field(default_factory=list)

    COUNTERS = ("duplicates", "losses", "order_violations", "aggregate_mismatches",
                "table_mismatches", "unfinished", "driver_missing", "atomicity")

    def add(self, counter: str, n: int, what: str, examples: Iterable[Any] = ()) -> None:
        if n:
            setattr(self, counter, getattr(self, counter) + n)
            listed = list(examples)[:MAX_LISTED]
            example = f" e.g. {listed}" if listed else ""
            self.violations.append(f"{counter} +{n}: {what}{example}")

    @property
    def ok(self) -> bool:
        return not any(getattr(self, c) for c in self.COUNTERS)

    def counts(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in ("records", "processed", "dead_lettered",
                                              *self.COUNTERS)}

    def report(self) -> str:
        head = " ".join(f"{k}={v}" for k, v in self.counts().items())
        if self.ok:
            return f"oracle: OK {head}"
        return "oracle: VIOLATIONS " + head + "\n  " + "\n  ".join(self.violations)


@dataclass(frozen=True)
class _In:
    src: Src
    id: int | None
    key: str | None
    n: int
    poison: bool


def is_poison(record: Record) -> bool:
    """Is this input record poison (undecodable or marked)?"""
    return _classify(record).poison


def _classify(record: Record) -> _In:
    src = (record.partition, record.offset)
    try:
        value = json.loads(record.value or b"")
    except ValueError:
        return _In(src, None, None, 0, True)
    poison = any(value.get(k) is True for k in POISON_KINDS)
    return _In(src, value["id"], value["key"], value["n"], poison)


def _values(read: TopicRead) -> list[tuple[int, dict[str, Any]]]:
    return [(r.partition, json.loads(r.value or b"null")) for r in read.all()]


def _exactly_once(result: OracleResult, topic: str, seen: Counter[Src],
                  expected: set[Src], forbidden: set[Src]) -> None:
    dups = {s: c - 1 for s, c in seen.items() if c > 1}
    result.add("duplicates", sum(dups.values()), f"{topic}: inputs (partition, offset) "
               "seen more than once", sorted(dups))
    lost = sorted(expected - seen.keys())
    result.add("losses", len(lost), f"{topic}: inputs missing", lost)
    leaked = sorted(forbidden & seen.keys())
    result.add("losses", len(leaked), f"{topic}: inputs that belong elsewhere", leaked)


def _check_echo(result: OracleResult, topics: Topics, echo: TopicRead,
                ok: set[Src], poison: set[Src]) -> None:
    values = _values(echo)
    _exactly_once(result, topics.echo, Counter((v["p"], v["o"]) for _, v in values),
                  ok, poison)
    last: dict[tuple[int, int], int] = {}
    bad = []
    for out_partition, v in values:
        where = (out_partition, v["p"])
        if v["o"] <= last.get(where, -1):
            bad.append((v["p"], v["o"]))
        last[where] = v["o"]
    result.add("order_violations", len(bad), f"{topics.echo}: input partition order broken",
               bad)


def _check_aggregates(result: OracleResult, topics: Topics, by_key: TopicRead,
                      aggregates: TopicRead, ok: set[Src], poison: set[Src]) -> None:
    inputs: dict[str, list[tuple[Src, int]]] = defaultdict(list)
    for r in by_key.all():
        v = json.loads(r.value or b"null")
        inputs[r.key.decode() if r.key else ""].append((tuple(v["src"]), v["n"]))
    seen: Counter[Src] = Counter(s for seq in inputs.values() for s, _ in seq)
    _exactly_once(result, topics.by_key, seen, ok, poison)
    bad = []
    for key, seq in inputs.items():
        srcs = [s for s, _ in seq]
        if any(b[0] == a[0] and b[1] <= a[1] for a, b in itertools.pairwise(srcs)):
            result.add("order_violations", 1, f"{topics.by_key}: key {key} out of input order")
    emitted: dict[str, list[tuple[Src, Agg]]] = defaultdict(list)
    for r in aggregates.all():
        v = json.loads(r.value or b"null")
        src = tuple(v.pop("src"))
        v.pop("id")
        emitted[r.key.decode() if r.key else ""].append((src, v))
    for key in sorted(inputs.keys() | emitted.keys()):
        agg: Agg = {}
        expected = []
        for src, n in inputs.get(key, []):
            agg = fold(agg, n)
            expected.append((src, agg))
        got = emitted.get(key, [])
        wrong = sum(a != b for a, b in zip(expected, got, strict=False))
        wrong += abs(len(expected) - len(got))
        if wrong:
            first = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False))
                          if a != b), min(len(expected), len(got)))
            bad.append(f"{key}@{first}: expected {expected[first:first + 1]} "
                       f"got {got[first:first + 1]} ({len(expected)} vs {len(got)})")
            result.aggregate_mismatches += wrong
    if bad:
        result.violations.append(f"aggregate_mismatches: {len(bad)} keys, e.g. {bad[:5]}")


def _check_dlq(result: OracleResult, topics: Topics, dlq: TopicRead, ok: set[Src],
               poison: set[Src]) -> None:
    seen: Counter[Src] = Counter()
    others = []
    for r in dlq.all():
        headers = {k: v.decode() for k, v in r.headers or ()}
        src = (int(headers.get("eoflow.partition", -1)), int(headers.get("eoflow.offset", -1)))
        if headers.get("eoflow.topic") == topics.input:
            seen[src] += 1
        else:
            others.append((headers.get("eoflow.topic"), src, headers.get("eoflow.error")))
    result.dead_lettered = sum(seen.values())
    _exactly_once(result, topics.dlq, seen, poison, ok)
    result.add("losses", len(others), f"{topics.dlq}: dead letters from other topics", others)


def expected_table(inputs: Sequence[_In]) -> dict[str, Agg]:
    table: dict[str, Agg] = {}
    for i in inputs:
        if not i.poison and i.key is not None:
            table[i.key] = fold(table.get(i.key, {}), i.n)
    return table


def _decode_table(items: Iterable[tuple[bytes, bytes]]) -> dict[str, Agg]:
    return {json.loads(k): json.loads(v) for k, v in items}


def _compare_table(result: OracleResult, what: str, got: dict[str, Agg],
                   expected: dict[str, Agg]) -> None:
    bad = sorted(k for k in got.keys() | expected.keys() if got.get(k) != expected.get(k))
    result.add("table_mismatches", len(bad), f"{what} differs from the fold of all inputs",
               [(k, expected.get(k), got.get(k)) for k in bad[:3]])


def _fold_changelog(read: TopicRead) -> dict[int, dict[bytes, bytes]]:
    parts: dict[int, dict[bytes, bytes]] = {}
    for p, records in read.records.items():
        contents: dict[bytes, bytes] = {}
        for r in records:
            if r.value is None:
                contents.pop(r.key or b"", None)
            else:
                contents[r.key or b""] = r.value
        parts[p] = contents
    return parts


async def restore_from_scratch(bootstrap: str, topics: Topics,
                               partitions: Sequence[int]) -> dict[int, dict[bytes, bytes]]:
    """Every table partition restored with eoflow's restore into a brand-new store."""
    out: dict[int, dict[bytes, bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="eo-restore-") as tmp:
        for p in partitions:
            identity = StoreIdentity(topics.app_id, "aggs", p, len(partitions))
            store = RocksDBPartitionStore.open(store_path(tmp, "aggs", p), identity)
            try:
                await restore_partition(bootstrap, (topics.changelog, p), store)
                out[p] = dict(store.items())
            finally:
                store.close()
    return out


def live_stores(datadirs: Iterable[Path], partitions: Sequence[int]
                ) -> dict[int, tuple[int, dict[bytes, bytes]]]:
    """Per partition, the most advanced store found in the workers' data directories."""
    best: dict[int, tuple[int, dict[bytes, bytes]]] = {}
    for datadir in datadirs:
        for p in partitions:
            path = store_path(datadir, "aggs", p)
            if not (path / "CURRENT").is_file():
                continue
            try:
                identity = read_identity(path)
            except StoreCorruptError:
                if _holds_no_data(path):
                    continue
                raise
            store = RocksDBPartitionStore.open(path, identity)
            try:
                offset = store.changelog_offset if store.changelog_offset is not None else -1
                if p not in best or offset > best[p][0]:
                    best[p] = (offset, dict(store.items()))
            finally:
                store.close()
    return best


def _holds_no_data(path: Path) -> bool:
    """Whether the store at ``path``, which has no identity record, holds no data either:
    a kill -9 cut its creation between the database and the identity. The runtime wipes
    it on open (``open_or_rebuild``), so it holds nothing to check. Data without an
    identity is corruption (eoflow writes the identity first)."""
    db = _open_db(path)
    try:
        return next(iter(db.keys()), None) is None
    finally:
        db.close()


async def check(bootstrap: str, topics: Topics, planned: Sequence[Input] = (),
                datadirs: Sequence[Path] = (), timeout: float = 60.0,
                restore: bool = True, group: str | None = None) -> OracleResult:
    """Run every check; ``datadirs`` of stopped workers adds the live-store check,
    ``restore`` the restored-from-scratch check (eoflow's restore), ``group`` the
    atomicity of outputs and that group's committed offsets."""
    result = OracleResult()
    input_read = await read_topic(bootstrap, topics.input, committed=False)
    inputs = [_classify(r) for r in input_read.all()]
    result.records = len(inputs)
    ok = {i.src for i in inputs if not i.poison}
    poison = {i.src for i in inputs if i.poison}
    result.processed = len(ok)
    missing = sorted({p.id for p in planned} - {i.id for i in inputs if i.id is not None}
                     - {p.id for p in planned if p.kind == "undecodable"})
    result.add("driver_missing", len(missing), "planned inputs not in the input topic", missing)
    reads = {}
    for name in (topics.echo, topics.by_key, topics.aggregates, topics.dlq, topics.changelog):
        reads[name] = read = await read_topic(bootstrap, name, timeout=timeout)
        result.add("unfinished", len(read.unfinished), f"{name}: read_committed position "
                   "never reached the high watermark (open transaction)",
                   sorted(read.unfinished.items()))
    _check_echo(result, topics, reads[topics.echo], ok, poison)
    _check_aggregates(result, topics, reads[topics.by_key], reads[topics.aggregates], ok, poison)
    _check_dlq(result, topics, reads[topics.dlq], ok, poison)
    _check_tables(result, bootstrap, topics, reads[topics.changelog], inputs, datadirs)
    offsets = await group_offsets(bootstrap, group) if group else None
    for finding in atomicity.check(
            [(i.src, i.poison) for i in inputs], reads, input_topic=topics.input,
            echo=topics.echo, by_key=topics.by_key, aggregates=topics.aggregates,
            dlq=topics.dlq, changelog=topics.changelog, offsets=offsets):
        result.add(*finding)
    if restore:
        await _check_restored(result, bootstrap, topics, reads[topics.changelog], inputs)
    return result


def _check_tables(result: OracleResult, bootstrap: str, topics: Topics, changelog: TopicRead,
                  inputs: Sequence[_In], datadirs: Sequence[Path]) -> None:
    expected = expected_table(inputs)
    folded = _fold_changelog(changelog)
    _compare_table(result, "changelog fold", _decode_table(
        (k, v) for part in folded.values() for k, v in part.items()), expected)
    if datadirs:
        stores = live_stores(datadirs, sorted(folded))
        bad = sorted(p for p in folded if p not in stores or stores[p][1] != folded[p])
        result.add("table_mismatches", len(bad), "live store partitions differ from the "
                   "changelog", [(p, stores.get(p, (None,))[0]) for p in bad])


async def _check_restored(result: OracleResult, bootstrap: str, topics: Topics,
                          changelog: TopicRead, inputs: Sequence[_In]) -> None:
    restored = await restore_from_scratch(bootstrap, topics, sorted(changelog.records))
    _compare_table(result, "store restored from scratch", _decode_table(
        (k, v) for part in restored.values() for k, v in part.items()), expected_table(inputs))
