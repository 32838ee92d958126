"""Benchmark driver: start a local broker, pre-produce the input, run every system as a
subprocess on the same input, measure, write results.json, then the report and chart.

    python -m bench.run --records 1000000 --repeats 3          # the full report
    python -m bench.run --quick                                # smoke: 20k records, 1 repeat
    python -m bench.run --systems eoflow-eos --workers 1,2 ... # N worker processes (bench/scale.py)

Methods (also written into docs/benchmarks.md):
- throughput: records/s = expected / (t_last - t_first). t_first is written by the app itself
  when the first input record reaches user code (bench/apps/_common.py); t_last is when this
  driver's read_committed consumer of the output topic has seen the expected count.
- latency: a fresh input topic, the system started and warmed up, then records produced at a
  fixed rate with their send time in the value; latency = time the output record is read by
  a read_committed consumer - send time.
- peak RSS: psutil, sum over the system's process tree, sampled every 0.2 s.
- kstreams-eos-cached (Kafka Streams with its record cache) emits fewer outputs than inputs,
  so its end is when every key's latest committed count equals its number of inputs.
- windowed counts (count-tumbling, count-hopping; bench/apps/_common.py): per input one
  output per window holding it, so the end is when the output count reaches the input
  count (tumbling) or twice it (hopping); records/s counts inputs. Afterwards the outputs
  are checked: per (key, window start) the counts must be 1, 2, ..., n once each and the
  final counts must add up to the expected outputs; a digest of the final counts is kept
  so the report can tell whether every system counted the same windows. No latency run
  (their outputs carry no send time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from itertools import product
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import kstreams_build
from bench.scale import CpuMeter, Process, WorkerGroup

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEYS = 10_000
PAD = "x" * 56  # value {"ts":...,"i":...,"pad":"xx..."} is ~100 bytes

#: Windowed counts (bench/apps/_common.py): outputs per input, for the driver's end.
WINDOWED = {"count-tumbling": 1, "count-hopping": 2}
WORKLOADS = ("passthrough", "count", *WINDOWED)
#: What a system runs unless its "workloads" says otherwise.
BASE_WORKLOADS = ("passthrough", "count")

SYSTEMS: dict[str, dict[str, Any]] = {
    "eoflow-eos": {"cmd": [str(BIN / "eoflow"), "worker", "-A", "bench.apps.eoflow_app",
                           "--loglevel", "warning"], "guarantee": "exactly_once",
                   "workloads": WORKLOADS},
    "eoflow-alo": {"cmd": [str(BIN / "eoflow"), "worker", "-A", "bench.apps.eoflow_app",
                           "--loglevel", "warning"], "guarantee": "at_least_once",
                   "workloads": WORKLOADS},
    # No count-hopping: faust-streaming 0.15's hopping windows step by int(step) seconds,
    # so the 0.5 s step raises ValueError (bench/apps/faust_app.py).
    "faust-eos": {"cmd": [sys.executable, "-m", "bench.apps.faust_app", "worker", "-l",
                          "warn", "--without-web"], "guarantee": "exactly_once",
                  "workloads": ("passthrough", "count", "count-tumbling")},
    # Faust's usual mode; not in the default --systems (a faust run at 1M records takes
    # minutes): ask for it with --systems ...,faust-alo.
    "faust-alo": {"cmd": [sys.executable, "-m", "bench.apps.faust_app", "worker", "-l",
                          "warn", "--without-web"], "guarantee": "at_least_once",
                  "workloads": ("count", "count-tumbling"), "default": False},
    "quix-eos": {"cmd": [sys.executable, "-m", "bench.apps.quix_app"],
                 "guarantee": "exactly_once", "workloads": WORKLOADS},
    "raw-aiokafka": {"cmd": [sys.executable, "-m", "bench.apps.raw_app"],
                     "guarantee": "at_least_once", "workloads": WORKLOADS},
    "raw-batched": {"cmd": [sys.executable, "-m", "bench.apps.raw_batched_app"],
                    "guarantee": "at_least_once"},
    # Java (bench/kstreams), built by kstreams_build before the broker starts.
    "kstreams-eos": {"cmd": kstreams_build.command(cache=False), "guarantee": "exactly_once",
                     "java": True},
    # Its default record cache: one output per key per commit, not one per input. Only the
    # count has a store (passthrough would be kstreams-eos again); no latency run (latency
    # is measured per input record).
    "kstreams-eos-cached": {"cmd": kstreams_build.command(cache=True),
                            "guarantee": "exactly_once", "java": True,
                            "workloads": ("count",), "done": "final-counts",
                            "latency": False},
}
#: eoflow's operators against its own passthrough and count (not in the default list, nor
#: in the report's tables: `make bench-ops` runs and prints them).
EOFLOW_WORKLOADS = ("take100", "count-groupby", "count-repartition")


def runs_workload(system: str, workload: str) -> bool:
    if workload in EOFLOW_WORKLOADS:
        return system.startswith("eoflow")
    return workload in SYSTEMS[system].get("workloads", BASE_WORKLOADS)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_value(i: int) -> bytes:
    return json.dumps({"ts": time.time(), "i": i, "pad": PAD}, separators=(",", ":")).encode()


def key_of(i: int) -> bytes:
    return f"k{i % KEYS}".encode()


def final_counts(n: int) -> dict[bytes, int]:
    """Each key's number of records among the first ``n``: its count once all are counted."""
    return {f"k{k}".encode(): n // KEYS + (1 if k < n % KEYS else 0) for k in range(min(n, KEYS))}


# ---------------------------------------------------------------- Kafka helpers

async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
        await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def delete_topics_containing(bootstrap: str, needle: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if needle in t]
        if names:
            with contextlib.suppress(Exception):
                await admin.delete_topics(names)
    finally:
        await admin.close()


async def committed_count(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` (non-transactional input: end offset = record count)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        if topic not in await c.topics():
            return -1
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return -1
        ends = await c.end_offsets(tps)
        return sum(ends.values())
    finally:
        await c.stop()


async def preproduce(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    if await committed_count(bootstrap, topic) == n:
        log(f"input {topic}: {n} records already there")
        return
    await delete_topics_containing(bootstrap, topic)
    await create_topics(bootstrap, [topic], partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all",
                                max_batch_size=512 * 1024)
    await producer.start()
    t0 = time.monotonic()
    try:
        pending = []
        for i in range(n):
            pending.append(await producer.send(topic, key=key_of(i), value=make_value(i)))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    log(f"input {topic}: produced {n} records in {time.monotonic() - t0:.1f}s")


class OutputReader:
    """read_committed consumer of every partition of the output topic, from the beginning.

    Progress (what :meth:`wait_for` waits on) is the number of records read, or, given
    ``final``, the number of keys whose ``count`` has reached ``final[key]``; a count above
    it (a duplicate) is counted in :attr:`over`.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, *,
                 decode_after: float | None = None, fetch_wait_ms: int = 50,
                 final: dict[bytes, int] | None = None, keep: bool = False) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        #: Every (key, value) read, when ``keep`` (checked after the run).
        self.kept: list[tuple[bytes, bytes]] | None = [] if keep else None
        self.decode_after = decode_after  # latency mode: record latencies of ts >= this
        self.fetch_wait_ms = fetch_wait_ms
        self.final = final
        self.keys_final: set[bytes] = set()
        self.over = 0
        self.count = 0
        self.first_seen: float | None = None
        self.reached: dict[int, float] = {}  # target count -> time first reached
        self.targets: list[int] = []
        self.latencies: list[float] = []
        self.ts_seen: int = 0
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, isolation_level="read_committed",
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_wait_ms, max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.time()
            for msgs in batches.values():
                if not msgs:
                    continue
                if self.first_seen is None:
                    self.first_seen = now
                self.count += len(msgs)
                if self.kept is not None:
                    self.kept.extend((m.key, m.value) for m in msgs)
                if self.final is not None:
                    self._check_counts(msgs, self.final)
                if self.decode_after is not None:
                    for m in msgs:
                        ts = json.loads(m.value)["ts"]
                        if ts >= self.decode_after:
                            self.latencies.append(now - ts)
            for t in self.targets:
                if t not in self.reached and self.progress >= t:
                    self.reached[t] = now

    def _check_counts(self, msgs: list[Any], final: dict[bytes, int]) -> None:
        for m in msgs:
            n, want = json.loads(m.value)["count"], final.get(m.key, 0)
            if n == want:
                self.keys_final.add(m.key)
            elif n > want:
                self.over += 1

    @property
    def progress(self) -> int:
        return self.count if self.final is None else len(self.keys_final)

    async def wait_for(self, target: int, timeout: float, alive: Any) -> float | None:
        self.targets.append(target)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if target in self.reached:
                return self.reached[target]
            if self.progress >= target:
                return time.time()
            if not alive():
                return None
            await asyncio.sleep(0.02)
        return None

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            await self._consumer.stop()


def check_windows(kept: list[tuple[bytes, bytes]], expected: int) -> dict[str, Any]:
    """The windowed counts' outputs: per (key, window start) the counts 1..n once each,
    final counts adding up to ``expected``; a digest of the final counts to compare systems."""
    seen: dict[tuple[bytes, int], list[int]] = {}
    for key, value in kept:
        v = json.loads(value)
        seen.setdefault((key, v["start"]), []).append(v["count"])
    bad = sum(1 for ns in seen.values() if sorted(ns) != list(range(1, len(ns) + 1)))
    finals = sorted((k, s, max(ns)) for (k, s), ns in seen.items())
    total = sum(n for _, _, n in finals)
    digest = hashlib.sha1(repr(finals).encode()).hexdigest()[:12]
    return {"windows": len(seen), "windows_bad": bad, "windows_total": total,
            "windows_digest": digest,
            "windows_ok": bad == 0 and total == expected and len(kept) == expected}


# ---------------------------------------------------------------- system processes

class SystemProcess:
    def __init__(self, system: str, env: dict[str, str], logfile: Path) -> None:
        self.system = system
        self.env = env
        self.logfile = logfile
        #: Where the app writes the time its first record reached user code.
        self.mark = Path(env["BENCH_MARK"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        #: CPU seconds of the process tree when its first record reached user code.
        self.cpu_at_first: float | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._first: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.logfile, "wb")  # noqa: SIM115 - kept for the process' lifetime
        self.proc = subprocess.Popen(
            SYSTEMS[self.system]["cmd"], cwd=ROOT, env=self.env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self._monitor = asyncio.create_task(self._watch_rss())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds of the process tree so far (None once it is gone)."""
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def watch_first(self) -> None:
        """Take :attr:`cpu_at_first` when the app writes :attr:`mark` (its first record),
        so CPU per record leaves out start-up (imports, group join, stores)."""
        async def watch() -> None:
            while not self.mark.exists():
                await asyncio.sleep(0.01)
            self.cpu_at_first = self.cpu_seconds()
        self._first = asyncio.create_task(watch())

    def first_time(self) -> float | None:
        """Wall-clock time the first record reached user code (None if none did yet)."""
        try:
            return float(self.mark.read_text())
        except (OSError, ValueError):  # not there, or created but not written yet
            return None

    def log_tail(self) -> str:
        return _tail(self.logfile)

    async def _watch_rss(self) -> None:
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            return
        while True:
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak_rss = max(self.peak_rss, total)
            await asyncio.sleep(0.2)

    async def stop(self, timeout: float = 30.0) -> int | None:
        for task in (self._monitor, self._first):
            if task:
                task.cancel()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # Our own process group (start_new_session): SIGTERM the leader, then the group.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of our group only
        return self.proc.returncode


def system_env(args: argparse.Namespace, system: str, workload: str, interval: float,
               app_id: str, in_topic: str, out_topic: str, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "BENCH_BOOTSTRAP": args.bootstrap, "BENCH_IN": in_topic, "BENCH_OUT": out_topic,
        "BENCH_APP_ID": app_id, "BENCH_WORKLOAD": workload, "BENCH_INTERVAL": str(interval),
        "BENCH_GUARANTEE": SYSTEMS[system]["guarantee"], "BENCH_PARTITIONS": str(args.partitions),
        "BENCH_DATADIR": str(workdir / "data"), "BENCH_MARK": str(workdir / "first"),
        "PYTHONPATH": f"{args.eoflow_src}:{ROOT}" if args.eoflow_src else str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    if system.startswith("eoflow"):
        env["EOFLOW_BROKER"] = f"kafka://{args.bootstrap}"
    return env


def run_name(system: str, workload: str, interval: float, rep: int,
             workers: int | None = None) -> str:
    ms = round(interval * 1000)
    n = f".w{workers}" if workers else ""
    return f"{system}.{workload}.{ms}ms{n}.r{rep}.{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- one throughput run

async def throughput_run(args: argparse.Namespace, system: str, workload: str,
                         interval: float, rep: int, in_topic: str,
                         workers: int | None = None) -> dict[str, Any]:
    """One run; ``workers``: that many worker processes of one app (bench/scale.py)."""
    name = run_name(system, workload, interval, rep, workers)
    workdir = args.results / "runs" / name
    out_topic = f"out.{name}"
    await create_topics(args.bootstrap, [out_topic], args.partitions)
    final = final_counts(args.records) if SYSTEMS[system].get("done") == "final-counts" else None
    per_input = WINDOWED.get(workload, 1)
    expected = args.records * per_input
    reader = OutputReader(args.bootstrap, out_topic, args.partitions, final=final,
                          keep=workload in WINDOWED)
    await reader.start()
    env = system_env(args, system, workload, interval, name, in_topic, out_topic, workdir)
    proc: Process
    meter: CpuMeter | None = None
    if workers:
        proc = WorkerGroup.of(workers, env, workdir, name,
                              lambda env, logfile: SystemProcess(system, env, logfile))
        meter = CpuMeter(proc, args.broker_pid)
    else:
        proc = SystemProcess(system, env, workdir / "system.log")
    code = eoflow_code() if system.startswith("eoflow") else None
    t_spawn = time.time()
    proc.start()
    proc.watch_first()
    if meter is not None:
        meter.watch()
    result: dict[str, Any] = {"kind": "throughput", "system": system, "workload": workload,
                              "interval": interval, "rep": rep, "expected": expected,
                              "inputs": args.records, "run": name}
    if workers:
        result["workers"] = workers
    try:
        timeout = max(120.0, args.records / 500.0)  # faust runs at ~2k rec/s
        target = expected if final is None else len(final)
        t_done = await reader.wait_for(target, timeout, proc.alive)
        cpu_done = proc.cpu_seconds()
        if meter is not None:
            result.update(meter.finish())
        if t_done is not None:
            await asyncio.sleep(args.grace)  # count any extra (duplicate) records
    finally:
        rc = await proc.stop()
        await reader.stop()
    t_first = proc.first_time()
    result.update(output=reader.count, returncode=rc, peak_rss_mb=proc.peak_rss / 2**20,
                  eoflow_code=code, loadavg_1m=os.getloadavg()[0],
                  startup_s=(t_first - t_spawn) if t_first else None)
    if reader.kept is not None:
        result.update(check_windows(reader.kept, expected))
        reader.kept = None
    if final is not None:  # outputs are updates, not one per input: the counts tell
        result.update(done="final-counts", keys=len(final), keys_final=len(reader.keys_final),
                      over_counts=reader.over)
    if t_done is not None and t_first is not None:
        elapsed = t_done - t_first
        result.update(ok=True, elapsed_s=elapsed, rate=args.records / elapsed,
                      wall_rate=args.records / (t_done - t_spawn))
        if cpu_done is not None and proc.cpu_at_first is not None:
            # CPU of the system itself per record: less sensitive to a busy machine than
            # records/s (which counts time spent waiting for a core).
            result["cpu_us_per_record"] = (cpu_done - proc.cpu_at_first) / args.records * 1e6
    else:
        what = "every key's final count" if final else "the expected output count"
        result.update(ok=False, error=f"timeout or exit before {what}",
                      log_tail=proc.log_tail())
    await delete_topics_containing(args.bootstrap, name)
    if not args.keep_data:
        subprocess.run(["rm", "-rf", str(workdir / "data")], check=False)
    return result


# ---------------------------------------------------------------- one latency run

async def latency_run(args: argparse.Namespace, system: str, workload: str,
                      interval: float) -> dict[str, Any]:
    name = run_name(system, workload, interval, 0).replace(".r0.", ".lat.")
    workdir = args.results / "runs" / name
    in_topic, out_topic = f"lin.{name}", f"lout.{name}"
    await create_topics(args.bootstrap, [in_topic, out_topic], args.partitions)
    env = system_env(args, system, workload, interval, name, in_topic, out_topic, workdir)
    proc = SystemProcess(system, env, workdir / "system.log")
    code = eoflow_code() if system.startswith("eoflow") else None
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    result: dict[str, Any] = {"kind": "latency", "system": system, "workload": workload,
                              "interval": interval, "rate": args.latency_rate,
                              "seconds": args.latency_seconds, "run": name}
    reader: OutputReader | None = None
    try:
        proc.start()
        # Warm-up: a trickle until the first output is visible (startup, group join).
        warm = OutputReader(args.bootstrap, out_topic, args.partitions, fetch_wait_ms=10)
        await warm.start()
        i = 0
        deadline = time.monotonic() + 120
        while warm.count == 0 and proc.alive() and time.monotonic() < deadline:
            for _ in range(args.partitions):
                await producer.send(in_topic, key=key_of(i), value=make_value(i))
                i += 1
            await asyncio.sleep(0.1)
        warmed = warm.count > 0
        await warm.stop()
        if not warmed:
            raise RuntimeError("no output during warm-up")
        await asyncio.sleep(3 * interval + 1)  # let the warm-up trickle drain
        t0 = time.time()
        reader = OutputReader(args.bootstrap, out_topic, args.partitions, decode_after=t0,
                              fetch_wait_ms=10)
        await reader.start()
        base = reader.count
        per_tick = max(1, args.latency_rate // 100)
        sent = 0
        start = time.monotonic()
        total = args.latency_rate * args.latency_seconds
        while sent < total:
            target = min(total, int((time.monotonic() - start) * args.latency_rate) + per_tick)
            while sent < target:
                await producer.send(in_topic, key=key_of(i), value=make_value(i))
                i += 1
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        deadline = time.monotonic() + 30 + 5 * interval
        while len(reader.latencies) < sent and proc.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lat = sorted(reader.latencies)
        result.update(sent=sent, measured=len(lat), output=reader.count - base,
                      ok=len(lat) >= sent)
        if lat:
            result.update(p50_ms=1000 * lat[len(lat) // 2],
                          p99_ms=1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                          max_ms=1000 * lat[-1])
    except Exception as exc:  # recorded, not raised: one failing system must not stop the rest
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                      log_tail=_tail(workdir / "system.log"))
    finally:
        await producer.stop()
        result["returncode"] = await proc.stop()
        result["peak_rss_mb"] = proc.peak_rss / 2**20
        result.update(eoflow_code=code, loadavg_1m=os.getloadavg()[0])
        if reader is not None:
            await reader.stop()
    await delete_topics_containing(args.bootstrap, name)
    if not args.keep_data:
        subprocess.run(["rm", "-rf", str(workdir / "data")], check=False)
    return result


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------- machine and versions

EOFLOW_SRC = ROOT  # the tree whose eoflow/ the eoflow systems import (--eoflow-src)


def eoflow_code() -> str:
    """HEAD plus a digest of uncommitted eoflow/ changes: eoflow may change between runs."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=EOFLOW_SRC,
                          capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--", "eoflow"], cwd=EOFLOW_SRC,
                          capture_output=True).stdout
    if diff:
        import hashlib

        head += "+dirty:" + hashlib.sha1(diff).hexdigest()[:7]
    return head


def environment(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("eoflow", "aiokafka", "faust-streaming", "mode-streaming", "quixstreams",
                "confluent-kafka", "rocksdict", "psutil", "matplotlib"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    versions["kafka-streams"] = kstreams_build.version()  # bench/kstreams, Maven
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu, "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "java": java.splitlines()[0] if java else "?", "kafka": "3.9.2 (tools/kafka/kafkactl.py)",
        "versions": versions, "git": eoflow_code(), "argv": sys.argv[1:],
        "records": args.records, "repeats": args.repeats, "partitions": args.partitions,
        "intervals": args.intervals, "latency_rate": args.latency_rate,
        "latency_seconds": args.latency_seconds, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


# ---------------------------------------------------------------- main

async def amain(args: argparse.Namespace) -> Path:
    results_file = args.results / "results.json"
    data: dict[str, Any] = {"env": environment(args), "runs": []}

    def save() -> None:
        results_file.write_text(json.dumps(data, indent=1))

    save()
    in_topic = f"bench-in.{args.records}"
    await preproduce(args.bootstrap, in_topic, args.records, args.partitions)
    for rep in range(args.repeats):
        for workload in args.workloads:
            for interval in args.intervals:
                for system, workers in product(args.systems, args.workers or [None]):
                    if not runs_workload(system, workload):
                        continue
                    log(f"throughput {system} {workload} commit={interval}s rep={rep}"
                        + (f" workers={workers}" if workers else ""))
                    r = await throughput_run(args, system, workload, interval, rep, in_topic,
                                             workers)
                    data["runs"].append(r)
                    save()
                    if r["ok"]:
                        log(f"  {r['rate']:.0f} rec/s, output {r['output']}/{r['expected']}, "
                            f"peak RSS {r['peak_rss_mb']:.0f} MB"
                            + (f", counts above final: {r['over_counts']}"
                               if "over_counts" in r else "")
                            + (f", windows {r['windows']} ok={r['windows_ok']} "
                               f"bad={r['windows_bad']} digest {r['windows_digest']}"
                               if "windows" in r else ""))
                    else:
                        log(f"  FAILED: output {r['output']}/{r['expected']} rc={r['returncode']}")
    if args.latency_seconds > 0:
        for workload in args.workloads:
            for interval in args.intervals:
                for system in args.systems:
                    if not runs_workload(system, workload) or workload in WINDOWED or \
                            not SYSTEMS[system].get("latency", True):
                        continue
                    log(f"latency {system} {workload} commit={interval}s "
                        f"@{args.latency_rate}/s for {args.latency_seconds}s")
                    r = await latency_run(args, system, workload, interval)
                    data["runs"].append(r)
                    save()
                    if "p50_ms" in r:
                        log(f"  p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms "
                            f"({r['measured']}/{r['sent']})")
                    else:
                        log(f"  FAILED: {r.get('error')}")
    data["env"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    return results_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--intervals", default="1.0,0.1", help="commit intervals, seconds")
    ap.add_argument("--systems", default=",".join(
        s for s, spec in SYSTEMS.items() if spec.get("default", True)))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--latency-rate", type=int, default=5000)
    ap.add_argument("--latency-seconds", type=int, default=20, help="0: skip latency runs")
    ap.add_argument("--grace", type=float, default=2.0,
                    help="seconds to keep counting output after the expected count")
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--results", type=Path,
                    default=ROOT / "bench-results" / time.strftime("%Y%m%d-%H%M%S"))
    ap.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                    help="write docs/benchmarks.md and docs/benchmarks.png at the end")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--eoflow-src", type=Path,
                    help="a checkout of another eoflow commit (git worktree) whose eoflow/ "
                         "the eoflow systems run, for before/after comparisons")
    ap.add_argument("--workers", metavar="N[,N...]",
                    help="run each eoflow system as N worker processes of one app (each N "
                         "in turn, e.g. 1,2) and record each one's CPU, the broker's and "
                         "the machine's (bench/scale.py; throughput only, no report: "
                         "prints medians)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 20k records, 1 repeat, 5 s latency at 1000/s; the "
                         "report goes to the results directory, not docs/")
    args = ap.parse_args()
    if args.eoflow_src:
        global EOFLOW_SRC
        args.eoflow_src = args.eoflow_src.resolve()
        if not (args.eoflow_src / "eoflow" / "__init__.py").exists():
            ap.error(f"--eoflow-src {args.eoflow_src}: no eoflow/ package there")
        EOFLOW_SRC = args.eoflow_src
    if args.quick:
        args.records, args.repeats = 20_000, 1
        args.latency_rate, args.latency_seconds = 1000, 5
    args.intervals = [float(x) for x in args.intervals.split(",")]
    args.systems = [s for s in args.systems.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    for s in args.systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    if args.workers is not None:
        args.workers = [int(n) for n in args.workers.split(",") if n]
        if min(args.workers, default=0) < 1 or \
                not all(s.startswith("eoflow") for s in args.systems):
            ap.error("--workers N[,N...]: each N >= 1, and eoflow systems only "
                     "(--systems eoflow-eos,...)")
        args.latency_seconds = 0  # throughput only
        args.report = False  # the published report is of one process per system
    args.results.mkdir(parents=True, exist_ok=True)
    if any(SYSTEMS[s].get("java") for s in args.systems):
        kstreams_build.ensure_built(log)  # before the broker: a failed build costs nothing

    broker = None
    args.broker_pid = None  # CPU of the broker JVM (--workers): only of a broker we start
    if not args.bootstrap:
        sys.path.insert(0, str(ROOT))
        from tools.kafka.kafkactl import KafkaBroker

        broker = KafkaBroker(port=None, datadir=args.results / "kafka", heap="1g")
        log("starting broker")
        broker.start()
        args.bootstrap = broker.bootstrap
        args.broker_pid = broker.pid
        log(f"broker at {args.bootstrap} (pid {broker.pid})")
    try:
        results_file = asyncio.run(amain(args))
    finally:
        if broker is not None:
            log("stopping broker")
            broker.stop()
            subprocess.run(["rm", "-rf", str(broker.data_dir)], check=False)
    log(f"results: {results_file}")
    if args.workers is not None:
        from bench.scale import summary

        print(summary(json.loads(results_file.read_text())["runs"]))
    if args.report:
        from bench.report import write_report

        if args.quick:  # a smoke test must not overwrite the published report
            write_report([results_file], md=args.results / "benchmarks.md",
                         png=args.results / "benchmarks.png")
        else:
            write_report([results_file])


if __name__ == "__main__":
    main()
