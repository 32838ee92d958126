"""Several Kafka nodes on 127.0.0.1 forming one KRaft cluster, for replication and failover.

Every node is a combined broker+controller and a voter of the quorum; topics and the
internal topics default to replication factor ``min(3, brokers)`` with ``min.insync.replicas``
one less (3 and 2). Ports and the shared cluster id are kept in ``<datadir>/cluster.json``,
each node's data in ``<datadir>/node-<id>``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tools.kafka import _config as config
from tools.kafka._broker import KafkaBroker
from tools.kafka._errors import KafkaError, KafkaProtocolError
from tools.kafka._jars import VERSION_ENV, resolve_version
from tools.kafka._probe import probe, wait_until
from tools.kafka._process import HOST, free_ports, in_parallel, port_in_use
from tools.kafka._wire import (
    GROUP,
    RETRIABLE_COORDINATOR_ERRORS,
    TRANSACTION,
    WIRE_ERRORS,
    KafkaConnection,
)

STATE_FILE = "cluster.json"
T = TypeVar("T")


class ClusterNode(KafkaBroker):
    """One node of a :class:`KafkaCluster`: the handle of a :class:`KafkaBroker`
    (``start``/``stop``/``restart``/``kill``, ``pid``, ``bootstrap``) plus ``node_id``.

    ``start()`` returns once the node has registered with the quorum and serves; it may
    still be catching up on its replicas (see :meth:`KafkaCluster.wait_in_sync`).
    """

    def __init__(self, cluster: KafkaCluster, node_id: int, ports: tuple[int, int], *,
                 heap: str, min_heap: str) -> None:  # fmt: skip
        super().__init__(port=ports[0], datadir=cluster.datadir / f"node-{node_id}",
                         heap=heap, version=cluster.version)  # fmt: skip
        self.node_id = node_id
        self.controller_port = ports[1]
        self.min_heap = min_heap
        self.voters = cluster.voters
        self.cluster_id = cluster.cluster_id
        self.replication_factor = cluster.replication_factor

    def _pick_controller_port(self) -> None:
        # Every node's voters list names this port: it can never move.
        if port_in_use(self.controller_port):
            raise KafkaError(f"controller port {self.controller_port} of node {self.node_id} "
                             "is in use")  # fmt: skip

    def _ready_check(self, timeout: float) -> str | None:
        try:
            with KafkaConnection(self.bootstrap, min(timeout, 10.0)) as conn:
                brokers = conn.metadata([])["brokers"]
        except WIRE_ERRORS as exc:
            return f"{type(exc).__name__}: {exc}"
        if self.node_id not in brokers:
            return f"node {self.node_id} not yet registered (metadata lists {sorted(brokers)})"
        return None


class KafkaCluster:
    """``brokers`` Kafka nodes on 127.0.0.1, each a broker+controller, one KRaft quorum.

    Free ports and a temporary data dir unless given. Node ids are 1..brokers;
    :meth:`broker` takes a 0-based index, :meth:`node` a node id. Every JVM is stopped
    when the Python process exits (unless :meth:`detach`-ed).
    """

    def __init__(self, brokers: int = 3, version: str | None = None,
                 datadir: Path | str | None = None, *, heap: str = "384m",
                 min_heap: str = "128m", ports: list[int] | None = None) -> None:  # fmt: skip
        if brokers < 1:
            raise KafkaError("a cluster needs at least one broker")
        self._owns_datadir = datadir is None
        self.datadir = (Path(tempfile.mkdtemp(prefix="eoflow-kafka-cluster-"))
                        if datadir is None else Path(datadir).resolve())  # fmt: skip
        state = config.read_state(self.datadir / STATE_FILE)
        if state and len(state["nodes"]) != brokers:
            raise KafkaError(f"{self.datadir} holds a {len(state['nodes'])}-node cluster, "
                             f"not {brokers}")  # fmt: skip
        self.version = resolve_version(version or os.environ.get(VERSION_ENV)
                                       or state.get("version"))  # fmt: skip
        self.cluster_id: str = state.get("cluster_id") or config.new_cluster_id()
        pairs = ([(int(n["port"]), int(n["controller_port"])) for n in state["nodes"]]
                 if state else _new_ports(brokers, ports))  # fmt: skip
        self.replication_factor = min(3, brokers)
        self.voters = ",".join(f"{i}@{HOST}:{c}" for i, (_, c) in enumerate(pairs, start=1))
        self.nodes = [ClusterNode(self, i, pair, heap=heap, min_heap=min_heap)
                      for i, pair in enumerate(pairs, start=1)]  # fmt: skip

    # ---------------------------------------------------------------- nodes
    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated."""
        return ",".join(n.bootstrap for n in self.nodes)

    def broker(self, index: int) -> ClusterNode:
        """The node at 0-based ``index`` (node id ``index + 1``)."""
        return self.nodes[index]

    def node(self, node_id: int) -> ClusterNode:
        """The node with KRaft/broker id ``node_id``."""
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id} (ids {[n.node_id for n in self.nodes]})")

    @property
    def pids(self) -> dict[int, int | None]:
        return {n.node_id: n.pid for n in self.nodes}

    def is_running(self) -> bool:
        """True when every node's JVM runs."""
        return all(n.is_running() for n in self.nodes)

    def __repr__(self) -> str:
        return f"KafkaCluster(bootstrap={self.bootstrap!r}, version={self.version!r})"

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 120.0) -> KafkaCluster:
        """Start every node that is not running and wait until the cluster is usable: every
        node registered, a transactional producer able to commit and the group coordinator
        answering (so the internal topics exist with their full replication factor)."""
        deadline = time.monotonic() + timeout
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._write_state()
        try:
            for n in self.nodes:
                if not n.is_running():
                    n.launch()
            for n in self.nodes:
                n.wait_ready(deadline)
            wait_until(lambda t: probe(self.bootstrap, t), deadline, self.nodes,
                       f"cluster {self.bootstrap}")  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node at once (SIGTERM, SIGKILL after ``timeout`` s). Idempotent."""
        errors = in_parallel([functools.partial(n.stop, timeout) for n in self.nodes])
        if errors:
            raise errors[0]

    def restart(self, timeout: float = 120.0) -> KafkaCluster:
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop, and delete the data dir if this object created it."""
        self.stop()
        if self._owns_datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def detach(self) -> None:
        for n in self.nodes:
            n.detach()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(f"=== node {n.node_id}\n{n.log_tail(lines)}" for n in self.nodes)

    # ---------------------------------------------------------------- metadata
    def metadata(self, topics: list[str] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Metadata from a running node (see :meth:`KafkaConnection.metadata`)."""
        return self._ask(lambda conn: conn.metadata(topics), timeout)

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``/``partition`` now (-1 while it has no leader)."""
        t = self.metadata([topic])["topics"].get(topic)
        if t is None or t["error"] != 0 or partition not in t["partitions"]:
            raise KafkaError(f"no partition {topic}/{partition} (metadata: {t})")
        return int(t["partitions"][partition]["leader"])

    def coordinator_of(self, kind: str, key: str, timeout: float = 30.0) -> int:
        """Node id of the coordinator of a consumer group (``kind="group"``) or of a
        transactional id (``kind="transaction"``), retrying while it is being elected."""
        key_type = {"group": GROUP, "transaction": TRANSACTION}.get(kind)
        if key_type is None:
            raise ValueError(f"kind must be 'group' or 'transaction', not {kind!r}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._ask(lambda conn: conn.find_coordinator(key, key_type))
            except KafkaProtocolError as exc:
                if exc.code not in RETRIABLE_COORDINATOR_ERRORS or time.monotonic() > deadline:
                    raise
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def under_replicated(self) -> list[tuple[str, int]]:
        """Partitions (internal topics too) without a leader or with a short ISR."""
        return sorted(
            (name, index)
            for name, t in self.metadata(None)["topics"].items()
            for index, p in t["partitions"].items()
            if len(p["isr"]) < len(p["replicas"]) or p["leader"] < 0
        )

    def wait_in_sync(self, timeout: float = 60.0) -> None:
        """Wait until every node is registered and no partition is under-replicated."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                missing = {n.node_id for n in self.nodes} - set(self.metadata([])["brokers"])
                lagging = self.under_replicated()
                if not missing and not lagging:
                    return
                last = f"unregistered nodes {sorted(missing)}, under-replicated {lagging[:5]}"
            except KafkaError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise KafkaError(f"cluster not in sync after {timeout:.0f} s: {last}")
            time.sleep(0.5)

    # ---------------------------------------------------------------- internals
    def _ask(self, request: Callable[[KafkaConnection], T], timeout: float = 10.0) -> T:
        """Send ``request`` to the first running node that answers."""
        errors = []
        for n in self.nodes:
            if not n.is_running():
                continue
            try:
                with KafkaConnection(n.bootstrap, timeout) as conn:
                    return request(conn)
            except WIRE_ERRORS as exc:
                errors.append(f"{n.bootstrap}: {type(exc).__name__}: {exc}")
        raise KafkaError(f"no node of the cluster answers ({'; '.join(errors) or 'none running'})")

    def _write_state(self) -> None:
        state = {
            "version": self.version,
            "cluster_id": self.cluster_id,
            "nodes": [{"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port}
                      for n in self.nodes],
        }  # fmt: skip
        (self.datadir / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def _new_ports(brokers: int, ports: list[int] | None) -> list[tuple[int, int]]:
    """(client port, controller port) per node: ``ports`` or free ones, and free ones."""
    if ports is not None and len(ports) != brokers:
        raise KafkaError(f"ports: want {brokers}, got {len(ports)}")
    client = list(ports) if ports is not None else free_ports(brokers)
    return list(zip(client, free_ports(brokers, set(client)), strict=True))
