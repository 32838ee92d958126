"""Named fault scenarios. Each takes a :class:`RunConfig` and returns a ScenarioResult.

Run one from the shell (starts its own broker unless ``--bootstrap`` is given)::

    python -m tests.harness.scenarios random_kills --records 5000 --seed 7

``--system faust`` runs the same scenario against faust-streaming (``faust_app``). Faust
has no fault points: its ``fault_points`` is :func:`kill_points` (kill -9 at random
moments, the last restart into an empty data directory, so the table is restored).

``--cluster`` runs on a three-broker KRaft cluster of its own (replication factor 3,
min.insync.replicas 2, a fault proxy in front of each node): every scenario works there,
and the cluster scenarios of :mod:`.cluster_scenarios` (``leader_kill``,
``txn_coordinator_kill``, ``group_coordinator_kill``, ``rolling_restart``, ``isr_loss``,
``network_faults``) need it::

    python -m tests.harness.scenarios txn_coordinator_kill --cluster --records 5000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .cluster_scenarios import CLUSTER_SCENARIOS
from .run import Run, RunConfig, ScenarioResult
from .workers import SYSTEMS, WorkerProc

__all__ = ["FAULT_POINTS", "SCENARIOS", "kill_points", "run_scenario"]

FAULT_POINTS = ("before_offsets", "before_commit", "after_commit", "before_store_write",
                "during_restore")

#: Log lines that show a woken zombie was refused (offsets or commit) or fenced.
ZOMBIE_SIGNS = ("refused offsets", "fenced", "Fenced", "aborting the interval")
#: Faust has no transaction timeout setting: its producers use aiokafka's default.
FAUST_TRANSACTION_TIMEOUT = 60.0

Scenario = Callable[[RunConfig], Awaitable[ScenarioResult]]


async def random_kills(cfg: RunConfig, kills: int = 4) -> ScenarioResult:
    """Two workers; SIGKILL one at a random moment, restart it with the same instance id."""
    async with Run(cfg) as run:
        ids = ["w1", "w2"]
        live = {i: run.workers.start(i) for i in ids}
        run.driver.start()
        await run.watcher.wait_echoed(1, 60)
        for _ in range(kills):
            await run.sleep(1.0, 3.0)
            victim = run.rng.choice(ids)
            run.workers.kill(live[victim])
            await run.sleep(0.0, 1.0)
            live[victim] = run.workers.start(victim)
        return await run.finish()


async def fault_points(cfg: RunConfig,
                       points: tuple[str, ...] = FAULT_POINTS) -> ScenarioResult:
    """One worker; for each point, crash there (EOFLOW_FAULT) and restart."""
    if cfg.system != "eoflow":
        return await kill_points(cfg, kills=len(points))
    async with Run(cfg) as run:
        run.driver.start()
        datadir: Path | None = None
        for point in points:
            if point == "during_restore":
                # Something to restore, into an empty store: crash after its first chunk.
                await _run_a_while(run, datadir)
                datadir = run.workers.workdir / "data" / "w1-fresh"
            # Let a few commits pass first; a restore hits its point once per partition.
            after = 0 if point == "during_restore" else 5
            w = run.workers.start("w1", fault=point, fault_after=after, datadir=datadir)
            try:
                await asyncio.to_thread(run.workers.wait, w, 60)
            except TimeoutError as exc:
                run.problem(f"fault {point} never fired: {exc}")
                run.workers.kill(w)
            if not w.fault_fired():
                run.problem(f"fault {point}: worker exited {w.returncode} without firing:\n"
                            f"{w.tail(10)}")
        run.workers.start("w1", datadir=datadir)
        return await run.finish()


async def kill_points(cfg: RunConfig, kills: int = 5) -> ScenarioResult:
    """fault_points without fault points: one worker, kill -9 at random moments and
    restart; the last restart gets an empty data directory (its table is restored)."""
    async with Run(cfg) as run:
        run.driver.start()
        w = run.workers.start("w1")
        await run.watcher.wait_echoed(1, 90)
        for i in range(kills):
            await run.sleep(1.0, 4.0)
            run.workers.kill(w)
            fresh = run.workers.workdir / "data" / "w1-fresh" if i == kills - 1 else None
            w = run.workers.start("w1", datadir=fresh)
        return await run.finish()


async def _run_a_while(run: Run, datadir: Path | None) -> None:
    """Run w1 until it has committed table state, then kill it.

    Waits on ``aggregates``, not ``echo``: the aggregate agent reads ``by-key`` only once
    ingest's transaction commits, so it runs an interval behind, and its changelog records
    commit with the aggregates. Killing on echo alone could leave every changelog record
    in the aborted last transaction, and a fresh store would have nothing to restore.
    """
    w = run.workers.start("w1", datadir=datadir)
    watcher = run.watcher

    def aggregated() -> int:
        return len(watcher.aggregated) + len(watcher.aggregated_ids)

    target = aggregated() + 200  # or everything, if fewer than 200 inputs are left
    await watcher.wait_for(lambda: aggregated() >= target or (run.driver.done
                                                              and watcher.drained()),
                           60, f"{target} aggregated")
    run.workers.kill(w)


async def scale_1_3_1(cfg: RunConfig) -> ScenarioResult:
    """One worker, two more join mid-stream, then they leave (SIGTERM) mid-stream."""
    async with Run(cfg) as run:
        run.workers.start("w1")
        run.driver.start()
        await run.watcher.wait_echoed(cfg.records // 10, 60)
        extra = [run.workers.start("w2"), run.workers.start("w3")]
        # Three members for real before two leave: on a loaded machine the input could
        # pass 40 % before w2 and w3 had joined, and they were stopped unassigned.
        await run.watcher.wait_for(lambda: all("assigned" in w.log() for w in extra), 90,
                                   "w2 and w3 assigned")
        await run.watcher.wait_echoed(cfg.records * 4 // 10, 90)
        for w in extra:
            code = await asyncio.to_thread(run.workers.term, w)
            if code != 0:
                run.problem(f"{w.instance_id} exited {code} on SIGTERM:\n{w.tail(10)}")
        return await run.finish()


async def zombie(cfg: RunConfig, rounds: int = 3) -> ScenarioResult:
    """SIGSTOP one of two workers past the session timeout, let the other take over,
    then SIGCONT it: the zombie must not commit anything.

    A zombie paused between two intervals has nothing to commit when it wakes, so there
    is nothing to refuse; then it is paused again (up to ``rounds`` times) until its log
    shows it was refused or fenced, so the scenario always exercises the fencing path.
    """
    async with Run(cfg) as run:
        run.workers.start("w1")
        # A busy zombie (10 ms per event, behind its share of the input) always holds an
        # open transaction when it is paused: the case this scenario is about.
        z = run.workers.start("w2", extra_env={"EO_DELAY": "0.01"})
        run.driver.start()
        await run.watcher.wait_echoed(cfg.records // 5, 60)
        for attempt in range(1, rounds + 1):
            await _pause_past_session(run, z, cfg)
            if any(sign in z.log() for sign in ZOMBIE_SIGNS):
                break
            if attempt < rounds and not run.driver.done:
                run.result.notes.append(f"round {attempt}: the zombie had nothing in flight")
                await run.sleep(0.5, 1.5)
                continue
            what = f"the zombie shows no sign of being refused {ZOMBIE_SIGNS}"
            # eoflow must say so; for another system it is a fact to record, and the
            # oracle's verdict on what the zombie wrote is what counts.
            (run.problem if cfg.system == "eoflow" else run.result.notes.append)(what)
            break
        return await run.finish()


async def _pause_past_session(run: Run, z: WorkerProc, cfg: RunConfig) -> None:
    run.workers.stop(z)
    before = run.watcher.echo_count
    await asyncio.sleep(cfg.session_timeout + 2)
    try:
        await run.watcher.wait_echoed(before + 100, cfg.transaction_timeout + 30)
    except TimeoutError as exc:
        if cfg.system == "eoflow":
            raise
        # Another system's survivor did not take over: record it, wake the zombie
        # and let the oracle judge what was written.
        run.problem(f"no progress while the zombie was stopped: {exc}")
    run.workers.cont(z)
    await asyncio.sleep(3)


async def broker_restart(cfg: RunConfig) -> ScenarioResult:
    """Restart the broker mid-stream; the workers must recover on their own."""
    async with Run(cfg) as run:
        run.workers.start("w1")
        run.workers.start("w2")
        run.driver.start()
        try:
            await run.watcher.wait_echoed(cfg.records // 4, 60)
        except TimeoutError as exc:
            if cfg.system == "eoflow":
                raise
            run.problem(f"stuck before the restart: {exc}")  # restart anyway, then judge
        await run.restart_broker()
        return await run.finish()


async def fresh_instance(cfg: RunConfig) -> ScenarioResult:
    """Issue 17.1: a worker dies between its changelog flush and its offsets, and comes back
    as a *new* instance (empty data directory, new instance id), so nothing aborts its
    open transaction until transaction_timeout; the partitions move twice meanwhile.

    The surviving owner commits table updates above that transaction (or waits for it);
    when the replacement joins, the owner reopens its store, which is then past the
    changelog's LSO: it must be kept (or caught up), never wiped.
    """
    if cfg.system != "eoflow":
        return await kill_points(cfg)
    # Input for ~10 s, so w1 (however slow to start) has intervals to commit before its
    # fault; with the input drained before w1 is assigned, its fault never fired.
    cfg = dataclasses.replace(cfg, rate=min(cfg.rate or 300.0, 300.0))
    async with Run(cfg) as run:
        survivor = run.workers.start("w2")
        run.driver.start()
        await run.watcher.wait_echoed(cfg.records // 10, 60)
        w1 = run.workers.start("w1", fault="before_offsets", fault_after=5)
        await asyncio.to_thread(run.workers.wait, w1, 90)
        if not w1.fault_fired():
            run.problem(f"w1 exited {w1.returncode} without its fault:\n{w1.tail(10)}")
        # w1's partitions go back to the survivor after the session timeout; then the
        # replacement joins, well within the dead transaction's timeout.
        await asyncio.sleep(cfg.session_timeout + 1.0)
        run.workers.start("w1-replacement")
        await _expect_alive(run, survivor)
        return await run.finish()


async def spawned_sends(cfg: RunConfig) -> ScenarioResult:
    """Issue 17.3: ``ingest`` sends through tasks it spawns and awaits; two workers, random
    kills, the last restart into an empty data directory as a new instance."""
    cfg = dataclasses.replace(cfg, extra_env={**cfg.extra_env, "EO_SPAWN": "1"})
    return await _kills_and_fresh_restart(cfg)


async def outside_writes(cfg: RunConfig) -> ScenarioResult:
    """Issue 17.4: a background task outside any event keeps writing the table; every
    write must be refused (no ghost key in any table), under kills and a fresh restart."""
    cfg = dataclasses.replace(cfg, extra_env={**cfg.extra_env, "EO_OUTSIDE_WRITES": "1"})
    result = await _kills_and_fresh_restart(cfg)
    return result


async def _kills_and_fresh_restart(cfg: RunConfig, kills: int = 3) -> ScenarioResult:
    async with Run(cfg) as run:
        live = {i: run.workers.start(i) for i in ("w1", "w2")}
        run.driver.start()
        await run.watcher.wait_echoed(1, 60)
        for k in range(kills):
            await run.sleep(1.0, 3.0)
            victim = run.rng.choice(sorted(live))
            run.workers.kill(live.pop(victim))
            await run.sleep(0.0, 1.0)
            fresh = f"{victim}-fresh{k}" if k == kills - 1 else victim
            live[fresh] = run.workers.start(fresh)
        result = await run.finish()
    if cfg.extra_env.get("EO_OUTSIDE_WRITES") and \
            not any("outside write refused" in w.log() for w in run.workers.procs):
        result.problems.append("no worker ever tried (and was refused) an outside write")
    return result


async def _expect_alive(run: Run, worker: WorkerProc) -> None:
    await asyncio.sleep(0)
    if not worker.alive:
        run.problem(f"{worker.instance_id} died:\n{worker.tail(15)}")


async def slow_agent(cfg: RunConfig) -> ScenarioResult:
    """Agents slower than the transaction timeout: once (then fine) and always (DLQ)."""
    cfg = dataclasses.replace(cfg, transaction_timeout=4.0, slow_seconds=5.0,
                              marks={"slow": 1, "slow_once": 1, **cfg.marks})
    if cfg.system == "faust":  # slower than *its* transaction timeout, which is fixed
        cfg = dataclasses.replace(cfg, slow_seconds=FAUST_TRANSACTION_TIMEOUT + 5,
                                  drain_timeout=max(cfg.drain_timeout, 300.0))
    return await _single_worker(cfg)


async def poison(cfg: RunConfig) -> ScenarioResult:
    """Undecodable and always-raising inputs go to the DLQ; the rest exactly once."""
    return await _single_worker(dataclasses.replace(
        cfg, marks={"undecodable": 5, "raise": 5, **cfg.marks}))


async def too_large(cfg: RunConfig) -> ScenarioResult:
    """An output over the topic's max.message.bytes aborts; the input ends in the DLQ."""
    return await _single_worker(dataclasses.replace(cfg, marks={"large": 2, **cfg.marks}))


async def _single_worker(cfg: RunConfig) -> ScenarioResult:
    async with Run(cfg) as run:
        run.workers.start("w1")
        run.driver.start()
        return await run.finish()


SCENARIOS: dict[str, Scenario] = {
    "random_kills": random_kills, "fault_points": fault_points, "scale_1_3_1": scale_1_3_1,
    "zombie": zombie, "broker_restart": broker_restart, "slow_agent": slow_agent,
    "poison": poison, "too_large": too_large, "fresh_instance": fresh_instance,
    "spawned_sends": spawned_sends, "outside_writes": outside_writes,
    **CLUSTER_SCENARIOS,
}


async def run_scenario(name: str, cfg: RunConfig) -> ScenarioResult:
    return await SCENARIOS[name](cfg)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=600.0)
    parser.add_argument("--bootstrap", help="use this broker (broker_restart needs our own)")
    parser.add_argument("--cluster", action="store_true",
                        help="start a three-broker cluster (the cluster scenarios need it)")
    parser.add_argument("--workdir", help="keep worker logs and data here (default: temp)")
    parser.add_argument("--system", choices=sorted(SYSTEMS), default="eoflow",
                        help="the system under test (default: eoflow)")
    parser.add_argument("--app", choices=["eo", "features"], default="eo",
                        help="eo_app, or features_app (windows, timers, group_by, ...)")
    args = parser.parse_args(argv)
    if args.scenario in CLUSTER_SCENARIOS and not args.cluster:
        parser.error(f"{args.scenario} is a cluster scenario: add --cluster")
    signal.signal(signal.SIGTERM, _interrupt)  # clean up workers and broker on SIGTERM
    from tools.kafka.kafkactl import KafkaBroker

    from .cluster import HarnessCluster

    with tempfile.TemporaryDirectory(prefix="eo-scenario-") as tmp_dir:
        tmp = args.workdir or tmp_dir
        cluster = HarnessCluster(Path(tmp) / "kafka-cluster") if args.cluster else None
        broker = (None if args.bootstrap or cluster else
                  KafkaBroker(datadir=Path(tmp) / "kafka"))
        try:
            for kafka in (broker, cluster):
                if kafka is not None:
                    kafka.start(timeout=240)
            bootstrap = args.bootstrap or (cluster or broker).bootstrap  # type: ignore[union-attr]
            cfg = RunConfig(bootstrap, Path(tmp),
                            f"{args.scenario.replace('_', '-')}-{int(time.time())}",
                            records=args.records, seed=args.seed, rate=args.rate,
                            broker=broker, system=args.system, app=args.app, cluster=cluster)
            result = asyncio.run(run_scenario(args.scenario, cfg))
        finally:
            for kafka in (broker, cluster):
                if kafka is not None:
                    kafka.stop()
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
