"""The soak: a long run with a worker killed every few seconds, occasional scaling and
broker restarts, then the oracle. Starts (and stops) its own broker on a free port.

    python -m tests.harness.soak --minutes 30 --records 1000000

``--cluster`` soaks a three-broker cluster of its own instead (``make soak-cluster``):
workers killed every few seconds as above (``w1`` reaching the brokers through fault
proxies), and every ``--cluster-fault-every`` seconds (on average) one of the cluster
faults of :mod:`.cluster_scenarios` (a leader, a transaction or group coordinator killed,
two of three nodes down, a rolling restart, a network fault: each once per round, in a
random order), each ended (nodes back and in sync) before the next; every ``--cut-every``
seconds a fault also checks a quiescent cut for atomicity.

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

from .cluster import ClusterFaults, HarnessCluster
from .cluster_scenarios import CLUSTER_FAULTS, proxied_env, start_workers, summarise_logs
from .run import Run, RunConfig, ScenarioResult
from .workers import WorkerProc

__all__ = ["main", "soak"]


@dataclass
class Chaos:
    kill_every: float = 5.0
    scale_probability: float = 0.1
    broker_restart_every: float = 300.0  # seconds between broker restarts (at most)
    workers: int = 2
    cluster_fault_every: float = 45.0  # cluster soak: seconds between faults (average)
    cut_every: float = 240.0  # cluster soak: seconds between atomicity cuts (at least)


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


async def soak_cluster(cfg: RunConfig, minutes: float, chaos: Chaos) -> ScenarioResult:
    """Worker kills all along; cluster faults one after the other (see the module doc)."""
    cluster = cfg.cluster
    if not isinstance(cluster, HarnessCluster):
        raise RuntimeError("soak_cluster needs RunConfig.cluster to be a HarnessCluster")
    await cluster.start_proxies()
    try:
        async with Run(cfg) as run:
            faults = ClusterFaults(run)
            ids = tuple(f"w{i + 1}" for i in range(chaos.workers))
            every = (chaos.kill_every * 0.5, chaos.kill_every * 1.5)
            workers = await start_workers(run, {"w1": proxied_env(cluster)}, ids, every)
            deadline = time.monotonic() + minutes * 60
            last_cut = time.monotonic()
            order: list[str] = []
            try:
                async with workers.running():
                    while True:
                        pause = run.rng.uniform(0.5, 1.5) * chaos.cluster_fault_every
                        if time.monotonic() + pause > deadline:
                            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                            break
                        await asyncio.sleep(pause)
                        if not order:  # every fault once per round, in a random order
                            order = run.rng.sample(sorted(CLUSTER_FAULTS), len(CLUSTER_FAULTS))
                        name = order.pop()
                        cut = time.monotonic() - last_cut > chaos.cut_every
                        print(f"soak: {name}{' + cut' if cut else ''} (kills="
                              f"{run.workers.kills}; {run.watcher.status()})", flush=True)
                        await CLUSTER_FAULTS[name](faults, workers, cut=cut)
                        if cut:
                            last_cut = time.monotonic()
            finally:
                await faults.heal()
            result = await run.finish()
    finally:
        await cluster.close_proxies()
    summarise_logs(run)
    return result


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
            ("broker kills", result.broker_kills), ("network faults", result.network_faults),
            ("atomicity cuts", result.cuts), ("atomicity", o.atomicity),
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
    parser.add_argument("--cluster", action="store_true",
                        help="soak a three-broker cluster with cluster faults")
    parser.add_argument("--cluster-fault-every", type=float, default=45.0,
                        help="cluster: seconds between faults (average)")
    parser.add_argument("--cut-every", type=float, default=240.0,
                        help="cluster: seconds between atomicity cuts (at least)")
    parser.add_argument("--workdir", help="keep logs and data here (default: a temp dir)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up workers and broker on SIGTERM
    chaos = Chaos(args.kill_every, 0.1, args.broker_restart_every, args.workers,
                  args.cluster_fault_every, args.cut_every)
    with tempfile.TemporaryDirectory(prefix="eo-soak-") as tmp_dir:
        workdir = Path(args.workdir or tmp_dir)
        cluster = HarnessCluster(workdir / "kafka-cluster") if args.cluster else None
        broker = None if cluster else KafkaBroker(datadir=workdir / "kafka")
        kafka = cluster or broker
        assert kafka is not None
        try:
            kafka.start(timeout=240)
            # Produce over ~95% of the run so faults hit a live stream throughout.
            rate = args.records / max(1.0, args.minutes * 60 * 0.95)
            cfg = RunConfig(kafka.bootstrap, workdir,
                            f"soak{'-cluster' if cluster else ''}-{int(time.time())}",
                            records=args.records, seed=args.seed, rate=rate, keys=1000,
                            drain_timeout=max(300.0, args.minutes * 20), broker=broker,
                            cluster=cluster)
            run = soak_cluster if cluster else soak
            result = asyncio.run(run(cfg, args.minutes, chaos))
        finally:
            kafka.stop()
        print(summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
