"""The oracle of ``features_app``: every feature of issues 11 and 12, checked exactly.

Inputs are identified by ``id`` with their multiplicity in the input topic (the driver
may have sent one twice after a failed send; a group_by hop keeps the value, not the
input's coordinates). Everything is read ``read_committed`` to the high watermark:

* ``echo`` and ``audit-out`` (the two sinks of a yielding agent over ``take`` batches) and
  the repartition topic hold every input exactly as often as the input topic does, and
  each ``echo`` partition keeps each input partition's order (a sink's records have no
  key, so one input partition's echoes spread over the echo partitions);
* per key, ``aggregates`` is the running fold over that key's records in repartition
  order, and the ``aggs`` changelog holds the final fold;
* windows: for every (key, 1-second window), the committed count plus the ``late``
  records equals the inputs of that window; each window is finalized at most once, with
  its committed count, and every window its partition's stream time has passed (end +
  grace) is finalized;
* sessions: folding the session rules over each repartition partition in offset order
  (the order the agent committed them in) gives exactly the committed ``visits`` table,
  the ``session-late`` ids, and the ``session-finals`` (each closed session once, with its
  count);
* sliding windows: the same fold gives, for each input, the count over the last 3 s of
  its key's event time (read back in ``aggregates``), the ``recent`` changelog's
  contributions, and the ``slide-finals`` (the window ending at each event time of a key,
  once, once stream time passed its end + grace);
* the global table ``firsts`` holds the last id of each key in repartition order;
* per input partition, the punctuator's ``ticks-out`` counts run 1..N with no gap or
  duplicate, and the ``ticks`` table holds N;
* per input partition, the stream-time punctuator ran exactly once for each 1 s slice of
  event time that had an input that was not late for it and that stream time passed, in
  order, counting 1..N, and the ``slices`` table holds N.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eoflow._transport.batching import default_partition
from eoflow._windows import STREAM_TIME_KEY, split_key
from eoflow.testing import Record, TopicRead, read_topic

from .app_common import fold
from .oracle import OracleResult, Topics

__all__ = ["FeatureTopics", "check"]

WINDOW, GRACE = 1.0, 0.5  # as features_app
SESSION_GAP = 2.0  # as features_app
SLIDE = 3.0  # as features_app


@dataclass(frozen=True)
class FeatureTopics(Topics):
    """The topics of ``features_app`` (``echo``/``aggregates``/``dlq`` as ``eo_app``)."""

    @property
    def audit_out(self) -> str:
        return f"{self.prefix}-audit-out"

    @property
    def finals(self) -> str:
        return f"{self.prefix}-finals"

    @property
    def late(self) -> str:
        return f"{self.prefix}-late"

    @property
    def ticks_out(self) -> str:
        return f"{self.prefix}-ticks-out"

    @property
    def session_finals(self) -> str:
        return f"{self.prefix}-session-finals"

    @property
    def session_late(self) -> str:
        return f"{self.prefix}-session-late"

    @property
    def slice_ticks(self) -> str:
        return f"{self.prefix}-slice-ticks"

    @property
    def slide_finals(self) -> str:
        return f"{self.prefix}-slide-finals"

    @property
    def repartition(self) -> str:
        return f"{self.app_id}-aggregate-key-repartition"

    def changelog_of(self, table: str) -> str:
        return f"{self.app_id}-{table}-changelog"

    def created_up_front(self, partitions: int) -> dict[str, int]:
        return {t: partitions for t in (self.input, self.echo, self.aggregates,
                                        self.audit_out, self.finals, self.late,
                                        self.ticks_out, self.session_finals,
                                        self.session_late, self.slide_finals,
                                        self.slice_ticks)
                } | {self.dlq: 1}


def _values(read: TopicRead) -> list[tuple[Record, dict[str, Any]]]:
    return [(r, json.loads(r.value)) for r in read.all() if r.value is not None]


def _counts(result: OracleResult, what: str, got: Counter[int], want: Counter[int]) -> None:
    extra, missing = got - want, want - got
    result.add("duplicates", sum(extra.values()), f"{what}: ids more often than input",
               sorted(extra))
    result.add("losses", sum(missing.values()), f"{what}: ids missing", sorted(missing))


async def check(bootstrap: str, topics: FeatureTopics, partitions: int) -> OracleResult:
    result = OracleResult()
    names = [topics.input, topics.echo, topics.audit_out, topics.repartition,
             topics.aggregates, topics.finals, topics.late, topics.ticks_out,
             topics.session_finals, topics.session_late, topics.slide_finals,
             topics.slice_ticks,
             *(topics.changelog_of(t) for t in ("aggs", "views", "visits", "recent",
                                                "firsts", "ticks", "slices"))]
    reads = {name: await read_topic(bootstrap, name) for name in names}
    for name, read in reads.items():
        result.add("unfinished", len(read.unfinished), f"{name} never reached its high "
                   "watermark (open transaction)", sorted(read.unfinished.items()))
    inputs = [v for _, v in _values(reads[topics.input])]
    want = Counter(v["id"] for v in inputs)
    result.records = len(inputs)
    by_id = {v["id"]: v for v in inputs}

    echo = _values(reads[topics.echo])
    _counts(result, "echo", Counter(v["id"] for _, v in echo), want)
    _counts(result, "audit-out", Counter(v["id"] for _, v in _values(reads[topics.audit_out])),
            want)
    repartitioned = _values(reads[topics.repartition])
    _counts(result, "repartition", Counter(v["id"] for _, v in repartitioned), want)
    last_offset: dict[tuple[int, int], int] = {}
    for r, v in echo:  # per echo partition, each input partition's echoes in offset order
        lane = (r.partition, v["p"])
        if v["o"] <= last_offset.get(lane, -1):
            result.add("order_violations", 1, f"echo[{r.partition}]: input[{v['p']}]@{v['o']}"
                       f" after @{last_offset[lane]}")
        last_offset[lane] = max(v["o"], last_offset.get(lane, -1))
    result.processed = sum(want.values())

    _check_aggregates(result, repartitioned, _values(reads[topics.aggregates]),
                      _fold_changelog(reads[topics.changelog_of("aggs")]))
    _check_windows(result, inputs, reads, topics, partitions)
    _check_sessions(result, repartitioned, reads, topics)
    _check_sliding(result, repartitioned, _values(reads[topics.aggregates]), reads, topics)
    firsts = {json.loads(k): json.loads(v)
              for p in _fold_changelog(reads[topics.changelog_of("firsts")]).values()
              for k, v in p.items()}
    last_by_key: dict[str, int] = {}
    for _, v in repartitioned:
        last_by_key[v["key"]] = v["id"]
    bad = {k for k in set(firsts) | set(last_by_key) if firsts.get(k) != last_by_key.get(k)}
    result.add("table_mismatches", len(bad), "global table firsts != last id per key",
               sorted(bad))
    _check_ticks(result, reads, topics)
    _check_slice_ticks(result, reads, topics)
    if set(by_id) != set(want):
        result.add("driver_missing", 1, "inputs without ids")
    return result


def _fold_changelog(read: TopicRead) -> dict[int, dict[bytes, bytes]]:
    folded: dict[int, dict[bytes, bytes]] = defaultdict(dict)
    for r in read.all():
        if r.key is None:
            continue
        if r.value is None:
            folded[r.partition].pop(r.key, None)
        else:
            folded[r.partition][r.key] = r.value
    return folded


def _check_aggregates(result: OracleResult, repartitioned: list[tuple[Record, dict[str, Any]]],
                      aggregates: list[tuple[Record, dict[str, Any]]],
                      table: dict[int, dict[bytes, bytes]]) -> None:
    expected: dict[str, list[tuple[int, dict[str, int]]]] = defaultdict(list)
    running: dict[str, dict[str, int]] = {}
    for _, v in repartitioned:
        running[v["key"]] = fold(running.get(v["key"], {}), v["n"])
        expected[v["key"]].append((v["id"], running[v["key"]]))
    got: dict[str, list[tuple[int, dict[str, int]]]] = defaultdict(list)
    for r, v in aggregates:
        got[r.key.decode() if r.key else ""].append(
            (v["id"], {k: v[k] for k in ("sum", "count", "min", "max")}))
    bad = [k for k in set(expected) | set(got) if expected.get(k) != got.get(k)]
    result.add("aggregate_mismatches", len(bad), "aggregates != running fold in repartition "
               "order", sorted(bad))
    final = {json.loads(k): json.loads(v) for p in table.values() for k, v in p.items()}
    bad = [k for k in set(final) | set(running) if final.get(k) != running.get(k)]
    result.add("table_mismatches", len(bad), "aggs changelog != fold of all inputs", sorted(bad))


def _window_of(t: float) -> float:
    return math.floor(round(t, 3) / WINDOW) * WINDOW


def _check_windows(result: OracleResult, inputs: Iterable[dict[str, Any]],
                   reads: dict[str, TopicRead], topics: FeatureTopics, partitions: int) -> None:
    want = Counter((v["key"], _window_of(v["t"])) for v in inputs)
    counts: dict[tuple[str, float], int] = {}
    stream_time: dict[int, float] = {}
    for partition, entries in _fold_changelog(reads[topics.changelog_of("views")]).items():
        for stored, raw in entries.items():
            if stored == STREAM_TIME_KEY:
                stream_time[partition] = int(raw) / 1000
                continue
            split = split_key(stored)
            if split is not None:
                counts[(json.loads(split[0]), split[1].start)] = json.loads(raw)
    late = Counter((v["key"], _window_of(v["t"])) for _, v in _values(reads[topics.late]))
    bad = [w for w in set(want) | set(counts) | set(late)
           if counts.get(w, 0) + late.get(w, 0) != want.get(w, 0)]
    result.add("table_mismatches", len(bad), "window count + late != inputs of the window",
               sorted(bad)[:10])
    finals = [(v["key"], v["start"], v["count"]) for _, v in _values(reads[topics.finals])]
    fired = Counter((k, s) for k, s, _ in finals)
    twice = [w for w, n in fired.items() if n > 1]
    result.add("duplicates", len(twice), "windows finalized more than once", sorted(twice))
    wrong = [(k, s, c) for k, s, c in finals if counts.get((k, s)) != c]
    result.add("aggregate_mismatches", len(wrong), "a final's count != the window's "
               "committed count", wrong[:10])
    missing = [w for w in counts
               if w[1] + WINDOW + GRACE <= stream_time.get(_partition_of(w[0], partitions), 0)
               and w not in fired]
    result.add("losses", len(missing), "closed windows never finalized", sorted(missing)[:10])
    result.dead_lettered = 0


Bounds = tuple[str, int, int]  # key, start ms, end ms


def _fold_sessions(repartitioned: list[tuple[Record, dict[str, Any]]]
                   ) -> tuple[dict[Bounds, int], dict[Bounds, int], Counter[int]]:
    """The session rules written out plainly, over each partition in offset order:
    ``(sessions, closed, late ids)``."""
    gap, grace = round(SESSION_GAP * 1000), round(GRACE * 1000)
    sessions: dict[Bounds, int] = {}
    closed: dict[Bounds, int] = {}
    late: Counter[int] = Counter()
    lanes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r, v in repartitioned:  # read_topic gives each partition in offset order
        lanes[r.partition].append(v)
    for lane in lanes.values():
        stream: int | None = None
        mine: dict[Bounds, int] = {}
        for v in lane:
            key, t = v["key"], round(v["t"] * 1000)
            stream = t if stream is None else max(stream, t)
            if t + grace < stream:
                late[v["id"]] += 1
                continue
            joined = [b for b in mine if b[0] == key and b[1] - gap < t < b[2] + gap]
            merged = (key, min([t, *(b[1] for b in joined)]), max([t, *(b[2] for b in joined)]))
            count = 1 + sum(mine.pop(b) for b in joined)
            mine[merged] = count
            for b, n in mine.items():
                if b[2] + gap + grace <= stream:
                    closed.setdefault(b, n)
        sessions.update(mine)
    return sessions, closed, late


def _check_sessions(result: OracleResult, repartitioned: list[tuple[Record, dict[str, Any]]],
                    reads: dict[str, TopicRead], topics: FeatureTopics) -> None:
    want, want_closed, want_late = _fold_sessions(repartitioned)
    got: dict[Bounds, int] = {}
    for entries in _fold_changelog(reads[topics.changelog_of("visits")]).values():
        for stored, raw in entries.items():
            split = split_key(stored)
            if split is not None:
                key, window = split
                got[(json.loads(key), round(window.start * 1000), round(window.end * 1000))] = \
                    json.loads(raw)
    bad = [b for b in set(want) | set(got) if want.get(b) != got.get(b)]
    result.add("table_mismatches", len(bad), "visits changelog != the session fold of the "
               "repartition log", sorted(bad)[:10])
    finals = Counter((v["key"], round(v["start"] * 1000), round(v["end"] * 1000), v["count"])
                     for _, v in _values(reads[topics.session_finals]))
    twice = [f for f, n in finals.items() if n > 1]
    result.add("duplicates", len(twice), "sessions finalized more than once", sorted(twice))
    expected = Counter((*b, n) for b, n in want_closed.items())
    result.add("losses", sum((expected - finals).values()), "closed sessions not finalized "
               "(or with another count)", sorted(expected - finals)[:10])
    result.add("aggregate_mismatches", sum((finals - expected).values()), "session finals "
               "that no closed session explains", sorted(finals - expected)[:10])
    late = Counter(v["id"] for _, v in _values(reads[topics.session_late]))
    result.add("table_mismatches", sum(((late - want_late) + (want_late - late)).values()),
               "session-late ids != the late inputs of the fold",
               sorted(((late - want_late) + (want_late - late)).elements())[:10])


def _fold_sliding(repartitioned: list[tuple[Record, dict[str, Any]]]
                  ) -> tuple[Counter[tuple[str, int]], dict[tuple[str, int], int],
                             dict[str, list[tuple[int, int]]]]:
    """The sliding rules written out plainly, over each partition in offset order:
    ``(contributions, closed windows by (key, end ms), each key's (id, read) in order)``."""
    size, grace = round(SLIDE * 1000), round(GRACE * 1000)
    contributions: Counter[tuple[str, int]] = Counter()
    closed: dict[tuple[str, int], int] = {}
    reads: dict[str, list[tuple[int, int]]] = defaultdict(list)
    lanes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r, v in repartitioned:
        lanes[r.partition].append(v)
    for lane in lanes.values():
        stream: int | None = None
        times: dict[str, list[int]] = defaultdict(list)

        def count(key: str, end: int, times: dict[str, list[int]] = times) -> int:
            return sum(1 for t in times[key] if end - size <= t <= end)

        for v in lane:
            key, t = v["key"], round(v["t"] * 1000)
            stream = t if stream is None else max(stream, t)
            if t + grace >= stream:  # not late: applied
                times[key].append(t)
                contributions[(key, t)] += 1
            reads[key].append((v["id"], count(key, t)))
            for k, held in times.items():
                for end in set(held):
                    if end + grace < stream and (k, end) not in closed:
                        closed[(k, end)] = count(k, end)
    return contributions, closed, reads


def _check_sliding(result: OracleResult, repartitioned: list[tuple[Record, dict[str, Any]]],
                   aggregates: list[tuple[Record, dict[str, Any]]],
                   reads: dict[str, TopicRead], topics: FeatureTopics) -> None:
    want, want_closed, want_reads = _fold_sliding(repartitioned)
    got: Counter[tuple[str, int]] = Counter()
    for entries in _fold_changelog(reads[topics.changelog_of("recent")]).values():
        for stored, raw in entries.items():
            split = split_key(stored)
            if split is not None:
                got[(json.loads(split[0]), round(split[1].end * 1000))] = json.loads(raw)
    bad = [c for c in set(want) | set(got) if want[c] != got[c]]
    result.add("table_mismatches", len(bad), "recent changelog != the sliding fold of the "
               "repartition log", sorted(bad)[:10])
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r, v in aggregates:
        seen[r.key.decode() if r.key else ""].append((v["id"], v["recent"]))
    bad_keys = [k for k in set(seen) | set(want_reads) if seen.get(k) != want_reads.get(k)]
    result.add("aggregate_mismatches", len(bad_keys), "recent[key].current() read by the "
               "agent != the sliding fold", sorted(bad_keys)[:10])
    finals = Counter((v["key"], round(v["end"] * 1000), v["count"])
                     for _, v in _values(reads[topics.slide_finals]))
    twice = [f for f, n in finals.items() if n > 1]
    result.add("duplicates", len(twice), "sliding windows finalized more than once",
               sorted(twice)[:10])
    expected = Counter((k, end, n) for (k, end), n in want_closed.items())
    result.add("losses", sum((expected - finals).values()), "closed sliding windows not "
               "finalized (or with another count)", sorted(expected - finals)[:10])
    result.add("aggregate_mismatches", sum((finals - expected).values()), "sliding finals "
               "that no closed window explains", sorted(finals - expected)[:10])


def _partition_of(key: str, partitions: int) -> int:
    return default_partition(json.dumps(key).encode(), partitions)


def _check_ticks(result: OracleResult, reads: dict[str, TopicRead],
                 topics: FeatureTopics) -> None:
    runs: dict[int, list[int]] = defaultdict(list)
    for _, v in _values(reads[topics.ticks_out]):
        runs[v["p"]].append(v["n"])
    table = {json.loads(k): json.loads(v)
             for p in _fold_changelog(reads[topics.changelog_of("ticks")]).values()
             for k, v in p.items()}
    for partition, ns in sorted(runs.items()):
        if sorted(ns) != list(range(1, len(ns) + 1)):
            result.add("duplicates", 1, f"ticks of partition {partition} are not 1..N",
                       sorted(ns)[:20])
        if table.get(str(partition)) != len(ns):
            result.add("table_mismatches", 1, f"ticks table p{partition}="
                       f"{table.get(str(partition))} but {len(ns)} committed runs")
    if not runs:
        result.add("losses", 1, "the punctuator never committed a run")


def _check_slice_ticks(result: OracleResult, reads: dict[str, TopicRead],
                       topics: FeatureTopics) -> None:
    """Fold the stream-time punctuation rules over each input partition in offset order:
    a slice ``[k, k + 1)`` s is marked by an input in it while stream time is below its
    end, and runs once stream time reaches its end."""
    size = round(WINDOW * 1000)
    want: dict[int, list[int]] = defaultdict(list)
    lanes: dict[int, list[int]] = defaultdict(list)
    for r, v in _values(reads[topics.input]):
        lanes[r.partition].append(round(v["t"] * 1000))
    for partition, times in lanes.items():
        stream: int | None = None
        marked: set[int] = set()
        for t in times:
            end = (t // size + 1) * size
            if stream is None or end > stream:
                marked.add(end)
            stream = t if stream is None else max(stream, t)
            for until in sorted(u for u in marked if u <= stream):
                marked.discard(until)
                want[partition].append(until)
    got: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for _, v in _values(reads[topics.slice_ticks]):
        got[v["p"]].append((round(v["until"] * 1000), v["n"]))
    table = {json.loads(k): json.loads(v)
             for p in _fold_changelog(reads[topics.changelog_of("slices")]).values()
             for k, v in p.items()}
    for partition in sorted(set(want) | set(got)):
        runs = got.get(partition, [])
        wanted = want.get(partition, [])
        twice = sum((Counter(u for u, _ in runs) - Counter(wanted)).values())
        result.add("duplicates", twice, f"stream-time punctuations of partition {partition} "
                   "more often than the fold", runs[:10])
        missing = sum((Counter(wanted) - Counter(u for u, _ in runs)).values())
        result.add("losses", missing, f"stream-time punctuations of partition {partition} "
                   "missing", sorted(Counter(wanted) - Counter(u for u, _ in runs))[:10])
        if [n for _, n in runs] != list(range(1, len(runs) + 1)) \
                or table.get(str(partition), 0) != len(runs):
            result.add("table_mismatches", 1, f"slices table p{partition}="
                       f"{table.get(str(partition))} but runs counted "
                       f"{[n for _, n in runs][:20]}")
