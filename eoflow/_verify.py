"""``eoflow verify``: is *this* app exactly once under crashes? Run it twice and compare.

1. **Reference**: the inputs through the app on the broker-less test driver, twice. The two
   runs must agree; if they do not, the app is not deterministic (wall clock, randomness,
   state kept outside tables) and nothing below could judge it: verify says so and stops.
2. **Chaos**: the same inputs through ``eoflow worker`` subprocesses on a real broker, in a
   namespace (``EOFLOW_NAMESPACE``: the app's id and topics get a prefix, so nothing of
   the app's real topics is touched), while workers are killed with ``kill -9`` (some
   restarted on an empty data directory, as a new machine), the group rebalances, and
   one worker is paused past its session timeout and resumed (a zombie).
3. **Compare** every topic the app declares (outputs, repartition topics), its dead
   letters (as a multiset of source topic, key and value) and every table, read
   ``read_committed``: per topic and key, the values in order (keyless records as a
   multiset, since their partition is random). Each difference is printed with the inputs
   of the same key, and where the two runs first part.

Both runs give input ``i`` the same Kafka timestamp (``INPUT_T0_MS + i``), so
windows over event time compare. Timers run on the wall clock, which the two runs do not
share: an app with timers must name what they write with ``ignore`` (``--ignore``).

What it cannot see: effects outside Kafka (HTTP calls, databases, files) and anything
the app does that does not reach a topic or a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoflow._app import NAMESPACE_ENV, App
from eoflow._driver import TestDriver
from eoflow._transport import kit
from eoflow._transport.admin import list_topics
from eoflow.errors import ConfigurationError

__all__ = ["Report", "load_inputs", "verify"]

Input = tuple[str, Any, Any]  # (topic, key, value)
Snapshot = dict[str, dict[str, list[str]]]  # name -> key -> values (in order)

#: Input ``i`` has the Kafka timestamp ``INPUT_T0_MS + i`` in both runs (the test
#: driver's clock starts there too).
INPUT_T0_MS = 1_700_000_000_000
DEAD_LETTERS = "dead letters"


@dataclass
class Report:
    """What verify found."""

    records: int = 0
    deterministic: bool = True
    differences: list[str] = field(default_factory=list)
    kills: int = 0
    fresh_restarts: int = 0
    zombies: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.deterministic and not self.differences

    def text(self) -> str:
        head = (f"{self.records} inputs; chaos: {self.kills} kill -9 ({self.fresh_restarts} "
                f"restarted on an empty data directory), {self.zombies} zombie")
        if not self.deterministic:
            return (head + "\nNOT DETERMINISTIC: two undisturbed runs of the app gave different "
                    "outputs, so verify cannot judge exactly-once. Remove wall-clock time, "
                    "unseeded randomness and state kept outside tables from the app.\n"
                    + "\n".join(self.differences))
        if not self.differences:
            return head + "\nexactly once: every output topic and table equals the undisturbed run"
        return (head + f"\nNOT EXACTLY ONCE: {len(self.differences)} differences from the "
                "undisturbed run:\n" + "\n".join(self.differences))


def load_inputs(spec: str, records: int) -> list[Input]:
    """``module:function``; the function returns ``(topic, key, value)`` tuples (it may
    take the number of records wanted)."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    generator: Callable[..., Iterable[Input]] = getattr(importlib.import_module(module_name),
                                                        attribute or "inputs")
    try:
        produced = generator(records) if inspect.signature(generator).parameters else generator()
    except TypeError:
        produced = generator()
    inputs: list[Input] = [tuple(item) for item in produced]
    if any(len(item) != 3 for item in inputs):
        raise ConfigurationError(f"{spec}: yield (topic, key, value) tuples")
    return inputs


async def verify(app_spec: str, app: App, inputs: list[Input], *, bootstrap: str,
                 workers: int = 2, kills: int = 4, seed: int = 1, rate: float = 200.0,
                 timeout: float = 180.0, unordered: bool = False,
                 settings: dict[str, str] | None = None, ignore: Iterable[str] = (),
                 log: Callable[[str], None] = print) -> Report:
    """Run ``app`` (importable as ``app_spec``) both ways and compare (module docstring).
    ``ignore`` names topics and tables left out of the comparison."""
    from eoflow._runtime.topology import discover

    await discover(app)  # declares the hops' topics: they are compared and drained too
    ignored = set(ignore)
    unknown_names = ignored - set(app.topics) - set(app.tables)
    if unknown_names:
        raise ConfigurationError(f"--ignore {sorted(unknown_names)}: app {app.id!r} has no "
                                 "such topic or table")
    timers = [t.name for t in app.timers if t.kind != "task"]
    if timers and not ignored:
        raise ConfigurationError(
            f"app {app.id!r} has timers ({', '.join(timers)}): they run on the wall clock, "
            "which the undisturbed and the chaos run do not share, so what they write "
            "differs by design. Name the topics and tables they write with --ignore.")
    report = Report(records=len(inputs))
    fed = {topic for topic, _, _ in inputs}
    unknown = fed - set(app.topics)
    if unknown:
        raise ConfigurationError(f"inputs go to {sorted(unknown)}, which app {app.id!r} does "
                                 f"not declare (it declares {sorted(app.topics)})")
    log("reference: two undisturbed runs on the test driver, each in a fresh interpreter")
    first = await _reference_in_fresh_process(app_spec, inputs)
    second = await _reference_in_fresh_process(app_spec, inputs)
    first, second = _without(first, ignored), _without(second, ignored)
    if first != second:
        report.deterministic = False
        report.differences = _compare(first, second, unordered, inputs)
        return report
    log(f"chaos: {workers} workers on {bootstrap}, kill -9, fresh restarts, a zombie")
    chaos = await _chaos(app_spec, app, inputs, report, bootstrap=bootstrap, workers=workers,
                         kills=kills, seed=seed, rate=rate, timeout=timeout, log=log,
                         settings=settings or {}, ignored=ignored)
    report.differences = _compare(first, _without(chaos, ignored), unordered, inputs)
    return report


def _without(snapshot: Snapshot, ignored: set[str]) -> Snapshot:
    return {name: v for name, v in snapshot.items() if name.split(" ", 1)[1] not in ignored}


# -- the reference ----------------------------------------------------------------------
async def _reference_in_fresh_process(app_spec: str, inputs: list[Input]) -> Snapshot:
    """A fresh interpreter, as a worker is: no state left over from another run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        snapshot: Snapshot = await asyncio.get_running_loop().run_in_executor(
            pool, _reference_main, app_spec, inputs, os.getcwd())
        return snapshot


def _reference_main(app_spec: str, inputs: list[Input], cwd: str) -> Snapshot:
    from eoflow.cli import load_app

    os.chdir(cwd)
    return asyncio.run(_reference(load_app(app_spec), inputs))


async def _reference(app: App, inputs: list[Input]) -> Snapshot:
    async with TestDriver(app) as driver:
        for i, (topic, key, value) in enumerate(inputs):
            await driver.send(topic, value, key=key, timestamp=(INPUT_T0_MS + i) / 1000)
        await driver.settle(timeout=60)
        snapshot: Snapshot = {}
        for name in sorted(driver.broker.logs):
            spec = app.topics.get(name)
            records = [(o.key, o.value) for o in driver.outputs(name)]
            if spec is None:  # changelogs: compared as tables below
                continue
            snapshot[f"topic {name}"] = _group(records)
        for table in app.tables:
            snapshot[f"table {table}"] = {repr(k): [repr(v)]
                                          for k, v in sorted(driver.table(table).items(), key=repr)}
        snapshot[f"topic {DEAD_LETTERS}"] = _dead_letters(
            (o.key, o.value, o.headers) for o in driver.dead_letters())
        return snapshot


def _dead_letters(letters: Iterable[tuple[Any, Any, Iterable[tuple[str, bytes]]]],
                  namespace: str = "") -> dict[str, list[str]]:
    """Dead letters by source topic: ``key=value`` of each, as a multiset."""
    grouped: dict[str, list[str]] = {}
    for key, value, headers in letters:
        source = dict(headers).get("eoflow.topic", b"?").decode().removeprefix(namespace)
        grouped.setdefault(source, []).append(f"{key!r}={value!r}")
    for values in grouped.values():
        values.sort()
    return grouped


def _group(records: Iterable[tuple[Any, Any]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in records:
        grouped.setdefault(repr(key), []).append(repr(value))
    if "None" in grouped:
        grouped["None"].sort()
    return grouped


# -- the chaos run ----------------------------------------------------------------------
class _Workers:
    def __init__(self, app_spec: str, env: dict[str, str], workdir: Path) -> None:
        self._spec, self._env, self._dir = app_spec, env, workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, instance: str) -> None:
        log = open(self._dir / f"{instance}.log", "ab")  # noqa: SIM115 -- kept by the child
        self.procs[instance] = subprocess.Popen(
            [sys.executable, "-m", "eoflow.cli", "worker", "-A", self._spec, "--datadir",
             str(self._dir / instance), "--instance-id", instance, "--loglevel", "warning"],
            env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, instance: str) -> None:
        proc = self.procs.pop(instance)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def signal(self, instance: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.procs[instance].pid, sig)

    def stop_all(self) -> dict[str, int]:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(10)
        self.procs.clear()
        return codes


async def _chaos(app_spec: str, app: App, inputs: list[Input], report: Report, *,
                 bootstrap: str, workers: int, kills: int, seed: int, rate: float,
                 timeout: float, log: Callable[[str], None],
                 settings: dict[str, str], ignored: set[str]) -> Snapshot:
    rng = random.Random(seed)
    namespace = f"verify-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, NAMESPACE_ENV: namespace, "EOFLOW_BROKER": f"kafka://{bootstrap}",
           "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path]),
           **{f"EOFLOW_{k.upper()}": v for k, v in settings.items()},
           # The comparison reads the repartition topics whole: keep consumed records.
           "EOFLOW_REPARTITION_PURGE_INTERVAL": "0"}
    session = float(settings.get("session_timeout", app.settings.session_timeout))
    await create_chaos_topics(app, bootstrap, namespace, settings)
    with tempfile.TemporaryDirectory(prefix="eoflow-verify-") as tmp:
        pool = _Workers(app_spec, env, Path(tmp))
        names = [f"w{i + 1}" for i in range(workers)]
        try:
            for name in names:
                pool.start(name)
            feeding = asyncio.create_task(_feed(app, inputs, bootstrap, namespace, rate))
            await _first_commit(app, bootstrap, f"{namespace}.{app.id}", timeout)
            for k in range(kills):  # while the workers process: they have state to lose
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                victim = rng.choice(sorted(pool.procs))
                pool.kill(victim)
                report.kills += 1
                if k == kills - 1:  # a new machine: empty data directory, new instance id
                    victim = f"{victim}-new"
                    report.fresh_restarts += 1
                pool.start(victim)
            if len(pool.procs) > 1:
                zombie = rng.choice(sorted(pool.procs))
                pool.signal(zombie, signal.SIGSTOP)
                await asyncio.sleep(session + 2)
                pool.signal(zombie, signal.SIGCONT)
                report.zombies += 1
            await feeding
            log("chaos: inputs fed; waiting until every input is processed and committed")
            await _drained(app, bootstrap, namespace, timeout, ignored)
        finally:
            codes = pool.stop_all()
        bad = {n: c for n, c in codes.items() if c != 0}
        if bad:
            report.notes.append(f"workers exited with {bad} on SIGTERM (logs in {tmp})")
        return await _snapshot(app, bootstrap, namespace, ignored)


async def create_chaos_topics(app: App, bootstrap: str, namespace: str,
                              settings: Mapping[str, str]) -> None:
    """Create the app's declared topics in ``namespace`` before the workers do, each with
    ``retention.ms=-1`` on top of its own configs.

    The inputs' timestamps (``INPUT_T0_MS``, in 2023) flow to every output: under Kafka's
    default seven-day retention the broker's next retention check (every five minutes)
    would delete them in the middle of the run, and the comparison would blame the app.
    """
    topics = [t for t in app.topics.values() if t.pattern is None]
    default = int(settings.get("topic_partitions", app.settings.topic_partitions))
    names = {f"{namespace}.{n}": t.partitions or default for t in topics for n in t.names}
    config = {f"{namespace}.{n}": {**t.config, "retention.ms": "-1"}
              for t in topics for n in t.names}
    await kit.create_topics(bootstrap, names, config,
                            replication_factor=int(settings.get(
                                "replication_factor", app.settings.replication_factor)),
                            client_options=app.settings.client_options)


async def _feed(app: App, inputs: list[Input], bootstrap: str, namespace: str,
                rate: float) -> None:
    """Produce the inputs in order, about ``rate`` per second, in chunks of consecutive
    records of one topic."""
    started, sent, chunk = time.monotonic(), 0, max(1, int(rate / 10))
    i = 0
    while i < len(inputs):
        topic = inputs[i][0]
        batch: list[tuple[bytes | None, bytes | None]] = []
        stamps: list[int] = []
        while i < len(inputs) and inputs[i][0] == topic and len(batch) < chunk:
            batch.append(app.topics[topic].encode(inputs[i][1], inputs[i][2]))
            stamps.append(INPUT_T0_MS + i)
            i += 1
        await kit.produce(bootstrap, f"{namespace}.{topic}", batch, timestamps_ms=stamps,
                          client_options=app.settings.client_options)
        sent += len(batch)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def _first_commit(app: App, bootstrap: str, group: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    options = app.settings.client_options
    while not any(offset > 0 for offset in (await kit.group_offsets(
            bootstrap, group, client_options=options)).values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers committed nothing in {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def _drained(app: App, bootstrap: str, namespace: str, timeout: float,
                   ignored: Set[str] = frozenset()) -> None:
    """Every record of every consumed topic is committed by the group, and no transaction
    is open on any topic the comparison reads.

    The second half matters after a fresh restart: the replaced instance's transactional
    id is never used again, so its open transaction stays open until the broker aborts it
    after ``transaction_timeout``, and a read_committed reader sees nothing past its first
    record until then (docs/guarantees.md). Its dead letter, say, sits in front of every
    later one. Ignored topics are not waited for: the timers that write them keep
    transactions open as long as the workers run.
    """
    group = f"{namespace}.{app.id}"
    consumed = {f"{namespace}.{n}" for spec in app.agents.values() for t in spec.topics
                for n in t.names}
    consumed |= {f"{namespace}.{n}" for n in app.topics if n.endswith("-repartition")}
    compared = _compared_topics(app, namespace, ignored)
    deadline = time.monotonic() + timeout
    while True:
        committed = await kit.group_offsets(bootstrap, group,
                                            client_options=app.settings.client_options)
        pending = []
        for topic in sorted(consumed):
            read = await kit.read_topic(bootstrap, topic, timeout=5,
                                        client_options=app.settings.client_options)
            for partition, records in read.records.items():
                if records and committed.get((topic, partition), -1) <= records[-1].offset:
                    pending.append(f"{topic}[{partition}]")
        pending.extend(f"{topic}[{p}] (open transaction)" for topic, p in
                       await kit.open_transactions(bootstrap, consumed | compared,
                                                   client_options=app.settings.client_options))
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not drained after {timeout:.0f}s: {pending[:10]}")
        await asyncio.sleep(1.0)


def _compared_topics(app: App, namespace: str, ignored: Set[str]) -> set[str]:
    """The topics :func:`_snapshot` reads, in ``namespace``."""
    names = {n for name, t in app.topics.items() if t.pattern is None and name not in ignored
             for n in t.names}
    names |= {app.settings.changelog_topic(table) for table in app.tables
              if table not in ignored}
    names.add(app.settings.dlq_topic)
    return {f"{namespace}.{n}" for n in names}


async def _snapshot(app: App, bootstrap: str, namespace: str,
                    ignored: Set[str] = frozenset()) -> Snapshot:
    """Every compared topic and table, read_committed to its end (after :func:`_drained`,
    nothing may stop short of it: that raises rather than compare a part)."""
    snapshot: Snapshot = {}
    options = app.settings.client_options
    existing = await list_topics(bootstrap, client_options=options)

    async def read_whole(topic: str) -> list[kit.Record]:
        """``topic`` read_committed to its high watermark; none for a topic the run never
        created (compared empty)."""
        if topic not in existing:
            return []
        read = await kit.read_topic(bootstrap, topic, timeout=30, client_options=options)
        if read.unfinished:
            raise TimeoutError(f"reading {topic!r} read_committed stopped short of its end "
                               f"(partition: (position, high watermark)) {read.unfinished}:"
                               " a transaction is still open on it")
        return read.all()

    for name, topic in sorted(app.topics.items()):
        if name in ignored:
            continue
        records = await read_whole(f"{namespace}.{name}")
        snapshot[f"topic {name}"] = _group(
            (None if r.key is None else topic.key_codec.loads(r.key),
             None if r.value is None else topic.value_codec.loads(r.value))
            for r in records)
    for name, table in app.tables.items():
        if name in ignored:
            continue
        contents: dict[Any, Any] = {}
        records = await read_whole(f"{namespace}.{app.settings.changelog_topic(name)}")
        for key, value in kit.fold_changelog(records).items():
            decoded = table.decode_changelog(key, value)
            if decoded is not None:
                contents[decoded[0]] = decoded[1]
        snapshot[f"table {name}"] = {repr(k): [repr(v)]
                                     for k, v in sorted(contents.items(), key=repr)}
    records = await read_whole(f"{namespace}.{app.settings.dlq_topic}")
    snapshot[f"topic {DEAD_LETTERS}"] = _dead_letters(
        ((r.key, r.value, r.headers) for r in records), f"{namespace}.")
    return snapshot


def _compare(expected: Snapshot, got: Snapshot, unordered: bool,
             inputs: Sequence[Input] = ()) -> list[str]:
    differences = []
    for name in sorted(set(expected) | set(got)):
        want, have = expected.get(name, {}), got.get(name, {})
        for key in sorted(set(want) | set(have)):
            a, b = want.get(key, []), have.get(key, [])
            if unordered:
                a, b = sorted(a), sorted(b)
            if a != b:
                differences.append(f"{name} key {key}: {_parting(a, b)}"
                                   + _inputs_of(key, inputs))
    return differences


def _parting(a: list[str], b: list[str], around: int = 3) -> str:
    """Where two value lists first differ, with a few values before it."""
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                 min(len(a), len(b)))
    start = max(first - around, 0)

    def part(values: list[str]) -> str:
        shown = ", ".join(values[start:first + around])
        return (f"[{'..., ' if start else ''}{shown}"
                f"{', ...' if first + around < len(values) else ''}]")

    return (f"{len(a)} values expected, {len(b)} got; they part at #{first}: expected "
            f"{part(a)}, got {part(b)}")


def _inputs_of(key: str, inputs: Sequence[Input], limit: int = 3) -> str:
    same = [(i, topic, value) for i, (topic, k, value) in enumerate(inputs) if repr(k) == key]
    if not same:
        return ""
    shown = "; ".join(f"#{i} {topic}: {value!r}" for i, topic, value in same[:limit])
    more = f" (and {len(same) - limit} more)" if len(same) > limit else ""
    return f"\n    inputs with key {key}: {shown}{more}"
