"""The harness on a three-broker KRaft cluster: node faults, worker chaos, network faults
and mid-run atomicity cuts.

* :class:`HarnessCluster` -- ``tools.kafka``'s :class:`KafkaCluster` whose nodes also serve
  a second client listener, ``PROXIED``, advertised at a :class:`.proxy.FaultProxy` in
  front of each node. A client bootstrapped on the proxies (:attr:`proxied_bootstrap`)
  reaches every node through its proxy, because Kafka answers metadata requests with the
  addresses of the listener the request came in on; every other client (brokers among
  themselves, other workers, the driver, the oracle) uses ``PLAINTEXT`` and is not
  affected. The launcher has no option for an extra listener, so the nodes are
  :class:`ClusterNode` subclasses that add it to their ``server.properties``.
* :class:`ClusterFaults` -- kill -9 / stop / restart a node by id and wait until the
  cluster is in sync again, counting what it did in the run's result.
* :class:`WorkerChaos` -- kill -9 a random worker every few seconds and restart it with
  the same instance id (``random_kills``, for as long as a scenario's faults last).
* :func:`quiescent_cut` -- kill every worker, fence their transactional ids, and check the
  atomicity of what is committed at that moment (:func:`.atomicity.check_cut`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tools.kafka.kafkactl import ClusterNode, KafkaCluster

from . import atomicity, oracle
from .proxy import FaultProxy
from .run import Run
from .workers import WorkerProc

__all__ = ["ClusterFaults", "HarnessCluster", "WorkerChaos", "quiescent_cut",
           "transactional_id"]

HOST = "127.0.0.1"
PROXIED = "PROXIED"
#: How long the cluster needs to notice a dead node (the launcher sets
#: broker.session.timeout.ms=6000) and move its leaderships and coordinators, plus slack.
NODE_FENCE_SECONDS = 8.0
#: Starting a node and catching up its replicas, on a busy 2-core machine.
START_TIMEOUT = 240.0


def transactional_id(app_id: str, instance_id: str) -> str:
    """The transactional id of a worker: ``{app_id}-{instance_id}`` (eoflow worker.py)."""
    return f"{app_id}-{instance_id}"


def _free_ports(n: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in taken and port not in ports:
            ports.append(port)
    return ports


class _ProxiedNode(ClusterNode):
    """A node with one more PLAINTEXT listener, advertised at its proxy's port."""

    def __init__(self, cluster: KafkaCluster, node: ClusterNode, heap: str,
                 listener_port: int, proxy_port: int) -> None:
        super().__init__(cluster, node.node_id, (node.port, node.controller_port),
                         heap=heap, min_heap=node.min_heap)
        self.listener_port = listener_port
        self.proxy_port = proxy_port

    def server_properties(self) -> dict[str, str]:
        settings = super().server_properties()
        settings["listeners"] += f",{PROXIED}://{HOST}:{self.listener_port}"
        settings["advertised.listeners"] += f",{PROXIED}://{HOST}:{self.proxy_port}"
        settings["listener.security.protocol.map"] += f",{PROXIED}:PLAINTEXT"
        return settings


class HarnessCluster(KafkaCluster):
    """Three nodes (RF 3, min.insync.replicas 2) plus a fault proxy per node.

    Call :meth:`start_proxies` in the event loop that injects the faults (the proxies run
    there) before a client uses :attr:`proxied_bootstrap`; :meth:`close_proxies` at the end.
    """

    def __init__(self, datadir: Path | str, *, heap: str = "320m") -> None:
        super().__init__(brokers=3, datadir=datadir, heap=heap)
        taken = {n.port for n in self.nodes} | {n.controller_port for n in self.nodes}
        ports = _free_ports(2 * len(self.nodes), taken)
        self.nodes = [_ProxiedNode(self, n, heap, ports[2 * i], ports[2 * i + 1])
                      for i, n in enumerate(self.nodes)]
        self.proxies: dict[int, FaultProxy] = {
            n.node_id: FaultProxy(n.listener_port, n.proxy_port, name=f"node{n.node_id}")
            for n in self.nodes}

    @property
    def proxied_bootstrap(self) -> str:
        """Every node through its proxy."""
        return ",".join(f"{HOST}:{p.listen_port}" for p in self.proxies.values())

    async def start_proxies(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()

    async def close_proxies(self) -> None:
        for proxy in self.proxies.values():
            await proxy.close()


class ClusterFaults:
    """Node faults of one run, counted in its result."""

    def __init__(self, run: Run) -> None:
        if run.config.cluster is None:
            raise RuntimeError("a cluster scenario needs RunConfig.cluster")
        self.run = run
        self.cluster: Any = run.config.cluster
        self.down: set[int] = set()

    def note(self, text: str) -> None:
        text = f"{time.strftime('%H:%M:%S')} {text}"
        print(f"cluster: {text}", flush=True)
        self.run.result.notes.append(text)

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        return int(await asyncio.to_thread(self.cluster.leader_of, topic, partition))

    async def coordinator_of(self, kind: str, key: str) -> int:
        return int(await asyncio.to_thread(self.cluster.coordinator_of, kind, key, 60.0))

    async def kill(self, node_id: int, *, graceful: bool = False) -> None:
        """SIGKILL the node (or SIGTERM: a controlled shutdown, with ``graceful``)."""
        node = self.cluster.node(node_id)
        await asyncio.to_thread(node.stop if graceful else node.kill)
        self.down.add(node_id)
        self.run.result.broker_kills += 1
        self.note(f"node {node_id} {'stopped' if graceful else 'killed (-9)'} "
                  f"({self.run.watcher.status()})")

    async def restart(self, *node_ids: int, in_sync: bool = True) -> None:
        """Start the nodes (in parallel: two of three must be back for a quorum), then
        wait until no partition is under-replicated."""
        ids = node_ids or tuple(sorted(self.down))
        started = time.monotonic()
        await asyncio.gather(*(asyncio.to_thread(self.cluster.node(i).start, START_TIMEOUT)
                               for i in ids))
        self.down -= set(ids)
        self.run.result.broker_restarts += len(ids)
        if in_sync:
            await asyncio.to_thread(self.cluster.wait_in_sync, START_TIMEOUT)
        self.note(f"node(s) {list(ids)} back{' and in sync' if in_sync else ''} after "
                  f"{time.monotonic() - started:.0f}s")

    async def heal(self) -> None:
        """Bring back every node this run took down (also after a failure)."""
        if self.down:
            await self.restart(*sorted(self.down))


class WorkerChaos:
    """``random_kills`` without an end: kill -9 a random worker every ``every`` seconds
    and restart it with the same instance id (and its own environment)."""

    def __init__(self, run: Run, live: dict[str, WorkerProc],
                 env_of: Mapping[str, Mapping[str, str]] | None = None,
                 every: tuple[float, float] = (2.0, 5.0)) -> None:
        self.run = run
        self.live = live
        self.env_of = dict(env_of or {})
        self.every = every
        self.rng = random.Random(run.config.seed + 1)
        self._lock = asyncio.Lock()
        self._spared: set[str] = set()

    def start(self, instance_id: str) -> WorkerProc:
        worker = self.run.workers.start(instance_id, extra_env=self.env_of.get(instance_id))
        self.live[instance_id] = worker
        return worker

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(*self.every))
            async with self._lock:
                victim = self.rng.choice(sorted(set(self.live) - self._spared))
                self.run.workers.kill(self.live[victim])
                await asyncio.sleep(self.rng.uniform(0.0, 1.0))
                self.start(victim)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WorkerChaos]:
        task = asyncio.create_task(self._loop(), name="worker-chaos")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._restart_dead()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    @contextlib.asynccontextmanager
    async def sparing(self, instance_id: str, timeout: float = 90.0) -> AsyncIterator[None]:
        """Wait until ``instance_id`` has partitions, then kill only the others until the
        block ends (a fault aimed at that worker then hits a live one)."""
        async with self._lock:
            self._spared.add(instance_id)
        try:
            worker = self.live[instance_id]
            deadline = time.monotonic() + timeout
            while worker.alive and "assigned" not in worker.log() \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            yield
        finally:
            self._spared.discard(instance_id)

    def _restart_dead(self) -> None:
        for instance_id, worker in list(self.live.items()):
            if not worker.alive:
                self.start(instance_id)


async def quiescent_cut(run: Run, chaos: WorkerChaos, label: str) -> None:
    """Stop the world and check that what is committed is atomic (:mod:`.atomicity`).

    1. pause the chaos, kill -9 every worker (so nothing commits meanwhile);
    2. fence every transactional id the run used: each open transaction is aborted;
    3. read the cut (every topic read_committed to its end, the group's offsets) and
       check it; the findings go to the oracle's verdict at the end of the run;
    4. restart the workers, resume the chaos.
    """
    cfg = run.config
    async with chaos.paused():
        for worker in list(chaos.live.values()):
            run.workers.kill(worker)
        ids = {transactional_id(cfg.name, w.instance_id) for w in run.workers.procs}
        began = time.monotonic()
        try:
            findings, unfinished, inputs = await _read_cut(run, ids)
        except Exception as exc:  # the cut could not be read: say so, do not hide it
            run.problem(f"cut {label}: could not check ({exc!r})")
        else:
            bad = [(c, n, f"cut {label}: {what}", ex) for c, n, what, ex in
                   findings + unfinished if n]
            run.cut_findings += bad
            run.result.cuts += 1
            print(f"cluster: cut {label}: {inputs} inputs, "
                  f"{sum(n for _, n, _, _ in bad)} violations "
                  f"({time.monotonic() - began:.0f}s)", flush=True)
            run.result.notes.append(f"cut {label}: {inputs} inputs checked, "
                                    f"{sum(n for _, n, _, _ in bad)} violations")
        for instance_id in sorted(chaos.live):
            chaos.start(instance_id)


async def _read_cut(run: Run, transactional_ids: set[str], tries: int = 4) -> Any:
    """Fence, then read and check the cut; an admin request that went to a dead node
    (the clients pick one at random) is retried."""
    for attempt in range(1, tries + 1):
        try:
            await atomicity.fence_transactional_ids(run.config.bootstrap, transactional_ids)
            return await atomicity.check_cut(run.config.bootstrap, run.topics,
                                             oracle.is_poison)
        except Exception as exc:
            if attempt == tries:
                raise
            print(f"cluster: reading the cut failed ({exc!r}); retrying", flush=True)
            await asyncio.sleep(2.0)
    raise AssertionError("unreachable")
