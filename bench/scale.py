"""Scaling out (issue 16): N ``eoflow worker`` processes as one system, and where the
machine's CPU went while they ran.

    bench/.venv/bin/python -m bench.run --systems eoflow-eos --workloads passthrough,count \\
        --intervals 1.0 --latency-seconds 0 --records 1000000 --repeats 3 --workers 2
    bench/.venv/bin/python -m bench.scale bench-results/<stamp>/results.json   # medians

With ``--workers N`` each throughput run of an eoflow system starts N worker processes of
the same app (one consumer group, one app id), each with its own data directory, its own
static member id (``EOFLOW_INSTANCE_ID={run}-w{k}``), its own first-record mark and log.
Records/s is the aggregate: the input count over the time from the first record any
worker processed to the last expected output read. The workers are started together; the
broker's ``group.initial.rebalance.delay.ms`` is 0 (tools/kafka), so the first to join
may start alone and hand half its partitions over when the second joins: that rebalance
is inside the measured time, as it would be in production.

Every run with ``--workers`` (1 too) also records the CPU seconds, from the first record
to the last output, of each worker, of the broker JVM, of this driver (its read_committed
reader) and of the whole machine (``busy_cores``: every process, other sessions' too),
so the report can say which of them used the cores. A results file written without
``--workers`` has none of these keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil


class Process(Protocol):
    """What :func:`bench.run.throughput_run` uses of a system under test."""

    @property
    def peak_rss(self) -> int: ...
    @property
    def cpu_at_first(self) -> float | None: ...

    def start(self) -> None: ...
    def watch_first(self) -> None: ...
    def alive(self) -> bool: ...
    def cpu_seconds(self) -> float | None: ...
    def first_time(self) -> float | None: ...
    def log_tail(self) -> str: ...
    async def stop(self) -> int | None: ...


class WorkerGroup:
    """N worker processes of one app, used by the driver as one :class:`Process`."""

    def __init__(self, workers: list[Process]) -> None:
        self.workers = workers

    @classmethod
    def of(cls, n: int, env: dict[str, str], workdir: Path, run: str,
           make: Callable[[dict[str, str], Path], Process]) -> WorkerGroup:
        """``make(env, logfile)`` once per worker, with the worker's own data directory,
        first-record mark and static member id in ``env``."""
        workers = []
        for k in range(n):
            own = dict(env, BENCH_DATADIR=str(workdir / "data" / f"w{k}"),
                       BENCH_MARK=str(workdir / f"first.w{k}"),
                       EOFLOW_INSTANCE_ID=f"{run}-w{k}")
            workers.append(make(own, workdir / f"system.w{k}.log"))
        return cls(workers)

    @property
    def peak_rss(self) -> int:
        """The sum of each worker's peak (an upper bound of the peak of the sum)."""
        return sum(w.peak_rss for w in self.workers)

    @property
    def cpu_at_first(self) -> float | None:
        """Each worker's CPU at its own first record, summed (None until all have one)."""
        marks = [w.cpu_at_first for w in self.workers]
        return None if None in marks else sum(m for m in marks if m is not None)

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def watch_first(self) -> None:
        for w in self.workers:
            w.watch_first()

    def alive(self) -> bool:
        return all(w.alive() for w in self.workers)

    def cpu_seconds(self) -> float | None:
        seconds = [w.cpu_seconds() for w in self.workers]
        return None if None in seconds else sum(s for s in seconds if s is not None)

    def first_time(self) -> float | None:
        """When the first record reached user code in any worker."""
        times = [t for t in (w.first_time() for w in self.workers) if t is not None]
        return min(times) if times else None

    def log_tail(self) -> str:
        return "\n".join(f"--- worker {k}\n{w.log_tail()}" for k, w in enumerate(self.workers))

    async def stop(self) -> int | None:
        codes = await asyncio.gather(*(w.stop() for w in self.workers))
        return next((c for c in codes if c), codes[0])


def _cpu_of_pid(pid: int) -> Callable[[], float | None]:
    def seconds() -> float | None:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return t.user + t.system
    return seconds


def _machine_busy() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait, since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class CpuMeter:
    """CPU seconds of each worker, the broker JVM, this driver and the machine between the
    first record any worker processed and :meth:`finish`, taken at the same instants."""

    def __init__(self, group: WorkerGroup, broker_pid: int | None) -> None:
        self._group = group
        self._clocks: dict[str, Callable[[], float | None]] = {
            **{f"w{k}": w.cpu_seconds for k, w in enumerate(group.workers)},
            "driver": _cpu_of_pid(psutil.Process().pid),
            "machine": _machine_busy,
        }
        if broker_pid is not None:
            self._clocks["broker"] = _cpu_of_pid(broker_pid)
        self._start: dict[str, float | None] | None = None
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    def _read(self) -> dict[str, float | None]:
        return {name: clock() for name, clock in self._clocks.items()}

    def watch(self) -> None:
        """Take the starting readings when the first record reaches any worker."""
        async def wait() -> None:
            while self._group.first_time() is None:
                await asyncio.sleep(0.01)
            self._t0, self._start = time.monotonic(), self._read()
        self._task = asyncio.create_task(wait())

    def finish(self) -> dict[str, Any]:
        """The results' keys: ``cpu_s`` per clock and ``cores`` (CPU seconds / elapsed)."""
        if self._task is not None:
            self._task.cancel()
        if self._start is None:
            return {}
        elapsed = time.monotonic() - self._t0
        cpu = {}
        for name, now in self._read().items():
            then = self._start[name]
            if then is not None and now is not None:
                cpu[name] = round(now - then, 3)
        cores = {name: round(v / elapsed, 3) for name, v in cpu.items()}
        return {"cpu_s": cpu, "cores": cores, "metered_s": round(elapsed, 3),
                "busy_cores": cores.get("machine"), "cpus": psutil.cpu_count()}


# ---------------------------------------------------------------- the medians

def others(run: dict[str, Any]) -> float | None:
    """Cores the rest of the host used during a run (other sessions, the kernel)."""
    cores = dict(run.get("cores", {}))
    machine = cores.pop("machine", None)
    return None if machine is None else max(0.0, machine - sum(cores.values()))


def _median(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any]) -> float:
    values = [v for v in map(value, runs) if v is not None]
    return statistics.median(values) if values else float("nan")


def _cores(name: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda run: run.get("cores", {}).get(name)


def summary(runs: list[dict[str, Any]]) -> str:
    """A table of medians per (system, workload, commit interval, workers)."""
    groups: dict[tuple[str, str, float, int], list[dict[str, Any]]] = {}
    for r in runs:
        if r.get("kind") == "throughput" and r.get("ok") and "workers" in r:
            key = (r["system"], r["workload"], r["interval"], r["workers"])
            groups.setdefault(key, []).append(r)
    lines = [f"{'system':<11} {'workload':<12} {'commit':>6} {'workers':>7} {'runs':>4} "
             f"{'records/s':>10} {'CPU µs/rec':>10} {'worker cores':>13} {'broker':>6} "
             f"{'driver':>6} {'others':>6} {'load 1m':>7}"]
    for (system, workload, interval, n), rs in sorted(groups.items()):
        workers = "+".join(f"{_median(rs, _cores(f'w{k}')):.2f}" for k in range(n))
        lines.append(
            f"{system:<11} {workload:<12} {interval:>5}s {n:>7} {len(rs):>4} "
            f"{_median(rs, lambda r: r['rate']):>10.0f} "
            f"{_median(rs, lambda r: r.get('cpu_us_per_record')):>10.1f} {workers:>13} "
            f"{_median(rs, _cores('broker')):>6.2f} {_median(rs, _cores('driver')):>6.2f} "
            f"{_median(rs, others):>6.2f} "
            f"{_median(rs, lambda r: r.get('loadavg_1m')):>7.2f}")
    lines.append("(medians; cores: CPU seconds / seconds from the first record to the last "
                 "output; others: the machine's busy cores minus the workers, broker and "
                 "driver, i.e. other processes on the host)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="medians of bench.run --workers results")
    ap.add_argument("results", type=Path, nargs="+",
                    help="results.json files, or bench/results/scale-1m.json (sessions)")
    args = ap.parse_args()
    runs: list[dict[str, Any]] = []
    for path in args.results:
        data = json.loads(path.read_text())
        for session in data.get("sessions", [data]):
            runs.extend(session["runs"])
    print(summary(runs))


if __name__ == "__main__":
    main()
