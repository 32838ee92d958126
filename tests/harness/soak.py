"""The soak: a long run with a worker killed every few seconds, occasional scaling and
broker restarts, then the oracle. Starts (and stops) its own broker on a free port.

    python -m tests.harness.soak --minutes 30 --records 1000000

Prints a summary table and exits 1 on any violation (or a run that did not drain).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tools.kafka.kafkactl import KafkaBroker

from .run import Run, RunConfig, ScenarioResult
from .workers import WorkerProc

__all__ = ["main", "soak"]


@dataclass
class Chaos:
    kill_every: float = 5.0
    scale_probability: float = 0.1
    broker_restart_every: float = 300.0  # seconds between broker restarts (at most)
    workers: int = 2


async def soak(cfg: RunConfig, minutes: float, chaos: Chaos) -> ScenarioResult:
    async with Run(cfg) as run:
        ids = [f"w{i + 1}" for i in range(chaos.workers)]
        live: dict[str, WorkerProc] = {i: run.workers.start(i) for i in ids}
        run.driver.start()
        deadline = time.monotonic() + minutes * 60
        last_restart = time.monotonic()
        extra: WorkerProc | None = None
        # Chaos for the whole --minutes, also after the last input was produced: kills and
        # restarts while draining still exercise restore and the commit cycle.
        while time.monotonic() < deadline:
            await run.sleep(chaos.kill_every * 0.5, chaos.kill_every * 1.5)
            roll = run.rng.random()
            if time.monotonic() - last_restart > chaos.broker_restart_every:
                print(f"soak: restarting the broker ({run.watcher.status()})", flush=True)
                await run.restart_broker()
                last_restart = time.monotonic()
            elif roll < chaos.scale_probability:
                extra = await asyncio.to_thread(_scale, run, extra)
            else:
                victim = run.rng.choice(ids)
                run.workers.kill(live[victim])
                await run.sleep(0.0, 1.0)
                live[victim] = run.workers.start(victim)
                print(f"soak: killed {victim} (kills={run.workers.kills}; "
                      f"{run.watcher.status()})", flush=True)
        return await run.finish()


def _scale(run: Run, extra: WorkerProc | None) -> WorkerProc | None:
    """Add a worker, or let the added one leave (SIGTERM: it commits and exits)."""
    if extra is None or not extra.alive:
        print("soak: scaling out (+w9)", flush=True)
        return run.workers.start("w9")
    print("soak: scaling in (-w9)", flush=True)
    code = run.workers.term(extra)
    if code != 0:
        run.problem(f"w9 exited {code} on SIGTERM:\n{extra.tail(10)}")
    return None


def summary(result: ScenarioResult) -> str:
    o = result.oracle
    rows = [("records", o.records), ("processed", o.processed),
            ("dead-lettered", o.dead_lettered), ("kills", result.kills),
            ("rebalances", result.rebalances), ("broker restarts", result.broker_restarts),
            ("duplicates", o.duplicates), ("losses", o.losses),
            ("order violations", o.order_violations),
            ("aggregate mismatches", o.aggregate_mismatches),
            ("table mismatches", o.table_mismatches), ("unfinished txns", o.unfinished),
            ("seconds", int(result.seconds))]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {value:>10}" for name, value in rows]
    return "\n".join(["soak summary:", *lines, result.report()])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds (average)")
    parser.add_argument("--broker-restart-every", type=float, default=300.0)
    parser.add_argument("--workdir", help="keep logs and data here (default: a temp dir)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up workers and broker on SIGTERM
    chaos = Chaos(args.kill_every, 0.1, args.broker_restart_every, args.workers)
    with tempfile.TemporaryDirectory(prefix="eo-soak-") as tmp_dir:
        workdir = Path(args.workdir or tmp_dir)
        broker = KafkaBroker(datadir=workdir / "kafka")
        try:
            broker.start(timeout=120)
            # Produce over ~95% of the run so faults hit a live stream throughout.
            rate = args.records / max(1.0, args.minutes * 60 * 0.95)
            cfg = RunConfig(broker.bootstrap, workdir, f"soak-{int(time.time())}",
                            records=args.records, seed=args.seed, rate=rate, keys=1000,
                            drain_timeout=max(300.0, args.minutes * 20), broker=broker)
            result = asyncio.run(soak(cfg, args.minutes, chaos))
        finally:
            broker.stop()
        print(summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
