"""Fault scenarios on a replicated three-broker cluster (``RunConfig.cluster``).

Every scenario runs two workers that keep being killed with ``kill -9`` and restarted
(:class:`.cluster.WorkerChaos`) while the brokers or the network fail, checks one
mid-run cut for atomicity (:func:`.cluster.quiescent_cut`), then drains and runs the
oracle (with its atomicity check against the group's committed offsets). Inputs are paced
so that they keep arriving while the faults happen.

==========================  =============================================================
``leader_kill``             kill -9 the leader of a random output partition (echo,
                            by-key, aggregates or the changelog); restart it
``txn_coordinator_kill``    kill -9 the transaction coordinator of a worker's
                            transactional id; restart it
``group_coordinator_kill``  kill -9 the group coordinator of the app's group; restart it
``rolling_restart``         each node in turn: kill -9, restart, wait until in sync
``isr_loss``                kill -9 two of three nodes (below min.insync.replicas, and the
                            controller quorum is lost); restart both after ``ISR_OUTAGE`` s
``network_faults``          ``w1`` reaches the nodes through fault proxies: latency and
                            dropped connections to its transaction coordinator, then
                            black holes longer than the session timeout to its group
                            coordinator and to its transaction coordinator (``w1`` is
                            spared by the kills during each fault, ``w2`` is not)
==========================  =============================================================

The faults themselves (:data:`CLUSTER_FAULTS`) are also what the cluster soak draws from.
Run one: ``python -m tests.harness.scenarios txn_coordinator_kill --cluster``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import Counter
from collections.abc import Awaitable, Callable

from .cluster import (
    NODE_FENCE_SECONDS,
    ClusterFaults,
    HarnessCluster,
    WorkerChaos,
    quiescent_cut,
    transactional_id,
)
from .run import Run, RunConfig, ScenarioResult

__all__ = ["CLUSTER_FAULTS", "CLUSTER_SCENARIOS", "ISR_OUTAGE", "proxied_env",
           "start_workers", "summarise_logs"]

#: How long two of three nodes stay down in ``isr_loss`` (seconds).
ISR_OUTAGE = 15.0
#: Added latency in ``network_faults`` (seconds, each direction).
LATENCY = 0.3

#: A fault: ``(faults, chaos, cut=...)``; with ``cut`` it checks one quiescent cut.
Fault = Callable[..., Awaitable[None]]


def _paced(cfg: RunConfig, seconds: float) -> RunConfig:
    """At most ``records / seconds`` inputs per second: input for the whole fault."""
    rate = cfg.records / seconds
    return dataclasses.replace(cfg, rate=min(cfg.rate or rate, rate),
                               drain_timeout=max(cfg.drain_timeout, 240.0))


def proxied_env(cluster: HarnessCluster) -> dict[str, str]:
    """The environment of a worker that reaches the cluster through the fault proxies."""
    return {"EO_BROKER_ADDR": cluster.proxied_bootstrap,
            "EO_BROKER": f"kafka://{cluster.proxied_bootstrap}"}


async def start_workers(run: Run, env_of: dict[str, dict[str, str]] | None = None,
                        ids: tuple[str, ...] = ("w1", "w2"),
                        every: tuple[float, float] = (2.0, 5.0)) -> WorkerChaos:
    """Start the workers and the driver; return once some inputs went through. The
    returned chaos kills one worker every ``every`` seconds once it is running."""
    chaos = WorkerChaos(run, {}, env_of, every)
    for instance_id in ids:
        chaos.start(instance_id)
    run.driver.start()
    await run.watcher.wait_echoed(max(1, min(run.config.records // 10, 300)), 180)
    return chaos


# -- faults: each one a complete fault (the nodes are back and in sync when it returns) --

async def _outage(faults: ClusterFaults, chaos: WorkerChaos, nodes: list[int], label: str,
                  *, down: float = NODE_FENCE_SECONDS, cut: str | None = None) -> None:
    """Kill the nodes, leave them down ``down`` s, restart them. ``cut``: "down" checks a
    cut while they are down, "back" once they are back."""
    faults.note(f"{label}: node(s) {nodes}")
    for node in nodes:
        await faults.kill(node)
    await asyncio.sleep(down)
    if cut == "down":
        await quiescent_cut(faults.run, chaos, f"node(s) {nodes} down")
    await faults.restart(*nodes)
    if cut == "back":
        await quiescent_cut(faults.run, chaos, f"node(s) {nodes} back")


async def leader_outage(faults: ClusterFaults, chaos: WorkerChaos, *, cut: bool = False) -> None:
    """kill -9 the leader of a random output partition (echo, by-key, aggregates or the
    changelog)."""
    run, t = faults.run, faults.run.topics
    topic = run.rng.choice([t.echo, t.by_key, t.aggregates, t.changelog])
    partition = run.rng.randrange(run.config.partitions)
    node = await faults.leader_of(topic, partition)
    await _outage(faults, chaos, [node], f"leader of {topic}[{partition}]",
                  cut="down" if cut else None)


async def txn_coordinator_outage(faults: ClusterFaults, chaos: WorkerChaos, *,
                                 cut: bool = False) -> None:
    """kill -9 the transaction coordinator of a worker's transactional id."""
    instance = faults.run.rng.choice(sorted(chaos.live))
    tid = transactional_id(faults.run.config.name, instance)
    node = await faults.coordinator_of("transaction", tid)
    await _outage(faults, chaos, [node], f"transaction coordinator of {tid}",
                  cut="down" if cut else None)


async def group_coordinator_outage(faults: ClusterFaults, chaos: WorkerChaos, *,
                                   cut: bool = False) -> None:
    """kill -9 the group coordinator of the app's consumer group."""
    node = await faults.coordinator_of("group", faults.run.config.name)
    await _outage(faults, chaos, [node], "group coordinator", cut="down" if cut else None)


async def quorum_outage(faults: ClusterFaults, chaos: WorkerChaos, *, cut: bool = False,
                        down: float = ISR_OUTAGE) -> None:
    """kill -9 two of three nodes (a worker's transaction coordinator and one more):
    fewer in-sync replicas than min.insync.replicas=2 everywhere, no controller quorum."""
    tid = transactional_id(faults.run.config.name, faults.run.rng.choice(sorted(chaos.live)))
    first = await faults.coordinator_of("transaction", tid)
    await _outage(faults, chaos, [first, first % 3 + 1], "two of three nodes", down=down,
                  cut="back" if cut else None)


async def rolling(faults: ClusterFaults, chaos: WorkerChaos, *, cut: bool = False) -> None:
    """Each node in turn: kill -9, a few seconds down, restart, wait until in sync."""
    faults.note("rolling restart")
    for node in (1, 2, 3):
        await faults.kill(node)
        await faults.run.sleep(2.0, 5.0)
        if cut and node == 2:
            await quiescent_cut(faults.run, chaos, "node 2 down (rolling restart)")
        await faults.restart(node)


async def network_rounds(faults: ClusterFaults, chaos: WorkerChaos, *,
                         cut: bool = False) -> None:
    """Between ``w1`` (proxied) and its transaction coordinator: latency, then dropped
    connections; then black holes longer than the session timeout to its group
    coordinator and to its transaction coordinator."""
    run, cluster = faults.run, _proxied(faults)
    txn = await faults.coordinator_of("transaction", transactional_id(run.config.name, "w1"))
    group = await faults.coordinator_of("group", run.config.name)
    async with chaos.sparing("w1"):
        await _latency(faults, cluster, txn, 8.0)
        await _drops(faults, cluster, txn, 3)
    for node, role in ((group, "group coordinator"), (txn, "transaction coordinator")):
        async with chaos.sparing("w1"):
            await _black_hole(faults, cluster, node, role)
    if cut:
        await quiescent_cut(run, chaos, "after the network faults")


async def network_blip(faults: ClusterFaults, chaos: WorkerChaos, *, cut: bool = False) -> None:
    """One network fault between ``w1`` and a random node: latency, drops or a black hole."""
    run, cluster = faults.run, _proxied(faults)
    node = run.rng.choice(sorted(cluster.proxies))
    kind = run.rng.choice(["latency", "drops", "black hole"])
    async with chaos.sparing("w1"):
        if kind == "latency":
            await _latency(faults, cluster, node, 10.0)
        elif kind == "drops":
            await _drops(faults, cluster, node, 3)
        else:
            await _black_hole(faults, cluster, node, "a node")
    if cut:
        await quiescent_cut(run, chaos, f"after {kind} to node {node}")


def _proxied(faults: ClusterFaults) -> HarnessCluster:
    cluster = faults.cluster
    if not isinstance(cluster, HarnessCluster):
        raise RuntimeError("network faults need a HarnessCluster (fault proxies in front "
                           "of its nodes); run with --cluster")
    return cluster


def _network_fault(faults: ClusterFaults, text: str) -> None:
    faults.run.result.network_faults += 1
    faults.note(f"network: {text} ({faults.run.watcher.status()})")


async def _latency(faults: ClusterFaults, cluster: HarnessCluster, node: int,
                   seconds: float) -> None:
    _network_fault(faults, f"+{LATENCY * 1000:.0f} ms each way between w1 and node {node} "
                   f"for {seconds:.0f}s")
    cluster.proxies[node].latency = LATENCY
    await asyncio.sleep(seconds)
    cluster.proxies[node].latency = 0.0


async def _drops(faults: ClusterFaults, cluster: HarnessCluster, node: int, times: int) -> None:
    for _ in range(times):
        _network_fault(faults, f"dropped {cluster.proxies[node].drop()} connections between "
                       f"w1 and node {node}")
        await faults.run.sleep(1.0, 2.0)


async def _black_hole(faults: ClusterFaults, cluster: HarnessCluster, node: int,
                      role: str) -> None:
    seconds = faults.run.config.session_timeout + 6.0
    _network_fault(faults, f"black hole between w1 and node {node} ({role}) for "
                   f"{seconds:.0f}s")
    cluster.proxies[node].black_hole(True)
    try:
        await asyncio.sleep(seconds)
    finally:
        cluster.proxies[node].black_hole(False)
    await faults.run.sleep(3.0, 5.0)


# -- scenarios: one fault under worker chaos, one cut, the oracle ----------------------

async def _scenario(cfg: RunConfig, fault: Fault, seconds: float, *,
                    proxied: bool = False) -> ScenarioResult:
    cluster = cfg.cluster
    if proxied:
        if not isinstance(cluster, HarnessCluster):
            raise RuntimeError("this scenario needs a HarnessCluster (fault proxies); run "
                               "it with --cluster")
        await cluster.start_proxies()
    try:
        async with Run(_paced(cfg, seconds)) as run:
            faults = ClusterFaults(run)
            env_of = {"w1": proxied_env(cluster)} if proxied else None  # type: ignore[arg-type]
            try:
                chaos = await start_workers(run, env_of)
                async with chaos.running():
                    await fault(faults, chaos, cut=True)
            finally:
                await faults.heal()
            result = await run.finish()
    finally:
        if proxied:
            await cluster.close_proxies()  # type: ignore[union-attr]
    if proxied:
        result.notes += [p.describe() for p in cluster.proxies.values()]  # type: ignore[union-attr]
    summarise_logs(run)
    return result


async def leader_kill(cfg: RunConfig) -> ScenarioResult:
    return await _scenario(cfg, leader_outage, 40.0)


async def txn_coordinator_kill(cfg: RunConfig) -> ScenarioResult:
    return await _scenario(cfg, txn_coordinator_outage, 40.0)


async def group_coordinator_kill(cfg: RunConfig) -> ScenarioResult:
    return await _scenario(cfg, group_coordinator_outage, 40.0)


async def isr_loss(cfg: RunConfig) -> ScenarioResult:
    """Nothing can commit while two nodes are down; eoflow must abort or retry, never
    commit partially, and carry on when the nodes are back."""
    return await _scenario(cfg, quorum_outage, 40.0 + ISR_OUTAGE)


async def rolling_restart(cfg: RunConfig) -> ScenarioResult:
    return await _scenario(cfg, rolling, 90.0)


async def network_faults(cfg: RunConfig) -> ScenarioResult:
    """``w1`` talks to the cluster through the fault proxies; ``w2`` directly."""
    return await _scenario(cfg, network_rounds, 70.0, proxied=True)


#: Warnings and errors in worker logs, reduced to their gist (numbers and ids blanked).
_LOG_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b.*")


def summarise_logs(run: Run, top: int = 8) -> None:
    """The most frequent warnings of the workers, as notes: what eoflow said it did."""
    seen: Counter[str] = Counter()
    for worker in run.workers.procs:
        for line in worker.log().splitlines():
            m = _LOG_LINE.search(line)
            if m:
                gist = re.sub(r"\d+(\.\d+)?", "N", m.group(0))
                seen[re.sub(r"'[^']*'", "'…'", gist)[:160]] += 1
    for gist, count in seen.most_common(top):
        run.result.notes.append(f"log x{count}: {gist}")


#: Every fault, by name (the soak picks among them).
CLUSTER_FAULTS: dict[str, Fault] = {
    "leader": leader_outage, "txn_coordinator": txn_coordinator_outage,
    "group_coordinator": group_coordinator_outage, "quorum": quorum_outage,
    "rolling": rolling, "network": network_blip,
}

CLUSTER_SCENARIOS: dict[str, Callable[[RunConfig], Awaitable[ScenarioResult]]] = {
    "leader_kill": leader_kill,
    "txn_coordinator_kill": txn_coordinator_kill,
    "group_coordinator_kill": group_coordinator_kill,
    "rolling_restart": rolling_restart,
    "isr_loss": isr_loss,
    "network_faults": network_faults,
}
