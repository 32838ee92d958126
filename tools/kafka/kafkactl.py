"""Run real Apache Kafka brokers (KRaft) on 127.0.0.1 without Docker.

Stdlib only (aiokafka, when installed, makes the readiness check stricter). As a module::

    from tools.kafka.kafkactl import KafkaBroker, KafkaCluster

    broker = KafkaBroker()          # free port, temporary data dir, Kafka 3.9.2
    broker.start()                  # blocks until a transactional producer can commit
    print(broker.bootstrap)         # "127.0.0.1:PORT"
    broker.restart()                # same port, same data dir (topics and offsets survive)
    broker.stop()

    KafkaBroker(version="4")        # 4.3.1; or "4.3.1", "3"; $EOFLOW_KAFKA_VERSION sets the default
    KafkaBroker(security="sasl_ssl", authorizer=True)   # SCRAM/PLAIN over TLS, ACLs on
    broker.client_config("alice", "SCRAM-SHA-512")      # aiokafka kwargs for that user

    cluster = KafkaCluster(brokers=3).start()   # 3 broker+controller nodes, RF 3, min ISR 2
    cluster.broker(0).kill()                    # SIGKILL; .start() brings it back
    cluster.leader_of("topic", 0)               # node id
    cluster.stop()

and as a CLI::

    python tools/kafka/kafkactl.py start|stop|status [--port 9092] [--datadir .eoflow/kafka]
        [--version 3.9.2|4.3.1|3|4] [--cluster 3] [--security sasl_ssl [--authorizer]]
    python tools/kafka/kafkactl.py libs [--version V | --all]

The modules: ``_jars`` (versions, the jar cache), ``_process`` (JVMs, pids, watchdog),
``_config`` (server.properties, log4j), ``_security`` (TLS, SCRAM users, ACLs), ``_probe``
(readiness), ``_broker`` (:class:`KafkaBroker`), ``_cluster`` (:class:`KafkaCluster`),
``_wire`` (metadata requests to one node).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python tools/kafka/kafkactl.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.kafka._broker import STATE_FILE, KafkaBroker
from tools.kafka._cluster import STATE_FILE as CLUSTER_STATE_FILE
from tools.kafka._cluster import ClusterNode, KafkaCluster
from tools.kafka._config import new_cluster_id, read_state
from tools.kafka._errors import KafkaError
from tools.kafka._jars import (
    KAFKA4_VERSION,
    KAFKA_VERSION,
    VERSION_ENV,
    ensure_libs,
    libs_dir,
    resolve_version,
)
from tools.kafka._process import free_port
from tools.kafka._security import SASL_USERS, make_tls_material

__all__ = [
    "KAFKA4_VERSION",
    "KAFKA_VERSION",
    "SASL_USERS",
    "ClusterNode",
    "KafkaBroker",
    "KafkaCluster",
    "KafkaError",
    "ensure_libs",
    "free_port",
    "libs_dir",
    "make_tls_material",
    "new_cluster_id",
    "resolve_version",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CLI_DATADIR = REPO_ROOT / ".eoflow" / "kafka"
DEFAULT_CLI_CLUSTER_DATADIR = REPO_ROOT / ".eoflow" / "kafka-cluster"
DEFAULT_CLI_PORT = 9092


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="kafkactl",
        description=f"local Apache Kafka (KRaft) for eoflow; default version {KAFKA_VERSION}",
    )
    ap.add_argument("command", choices=["start", "stop", "status", "libs"])
    ap.add_argument("--port", type=int, default=None,
                    help=f"default {DEFAULT_CLI_PORT} (a cluster: free ports, or PORT..PORT+N-1)")
    ap.add_argument("--datadir", type=Path, default=None,
                    help=f"default {DEFAULT_CLI_DATADIR} ({DEFAULT_CLI_CLUSTER_DATADIR} for"
                    " --cluster)")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--version", default=None,
                    help=f"Kafka version: {KAFKA_VERSION} (default, or ${VERSION_ENV}), "
                    f"{KAFKA4_VERSION}, or '3' / '4'")
    ap.add_argument("--all", action="store_true", help="libs: fetch 3.x and 4.x")
    ap.add_argument("--cluster", type=int, default=None, metavar="N",
                    help="start N broker+controller nodes (e.g. 3)")
    ap.add_argument("--security", choices=("plaintext", "sasl_ssl"), default=None,
                    help="single broker only: sasl_ssl = SCRAM/PLAIN over TLS")
    ap.add_argument("--authorizer", action="store_true",
                    help="with --security sasl_ssl: StandardAuthorizer, super users broker/admin")
    return ap  # fmt: skip


def _cli(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "libs":
            for v in [KAFKA_VERSION, KAFKA4_VERSION] if args.all else [args.version]:
                print(ensure_libs(v))
            return 0
        datadir: Path | None = args.datadir
        if args.cluster is not None or (datadir and (datadir / CLUSTER_STATE_FILE).is_file()):
            return _cli_cluster(args, datadir or DEFAULT_CLI_CLUSTER_DATADIR)
        return _cli_broker(args, datadir or DEFAULT_CLI_DATADIR)
    except KafkaError as exc:
        print(f"kafkactl: {exc}", file=sys.stderr)
        return 1


def _cli_broker(args: argparse.Namespace, datadir: Path) -> int:
    port = args.port
    if port is None and not (datadir / STATE_FILE).is_file():
        port = DEFAULT_CLI_PORT
    broker = KafkaBroker(port=port, datadir=datadir, version=args.version,
                         security=args.security, authorizer=args.authorizer or None)  # fmt: skip
    pid = broker.pid
    if args.command == "start":
        if pid is None:
            broker.start(timeout=args.timeout)
            broker.detach()
        else:
            print(f"already running (pid {pid})", file=sys.stderr)
        print(broker.bootstrap)
        print(f"Kafka {broker.version} pid {broker.pid}, data in {broker.datadir}, "
              f"logs in {broker.log_dir}", file=sys.stderr)  # fmt: skip
        if broker.sasl:
            print(f"SASL_SSL: CA {broker.ca_file}, users {broker.users}", file=sys.stderr)
        return 0
    if args.command == "stop":
        broker.stop()
        print("stopped" if pid else "not running", f"({broker.bootstrap})")
        return 0
    if pid is None:
        print(f"not running ({broker.bootstrap}, datadir {broker.datadir})")
        return 1
    print(f"running pid {pid} on {broker.bootstrap} (Kafka {broker.version}, "
          f"{broker.security_protocol}, datadir {broker.datadir})")  # fmt: skip
    return 0


def _cli_cluster(args: argparse.Namespace, datadir: Path) -> int:
    if args.security not in (None, "plaintext"):
        raise KafkaError("--security is for a single broker, not --cluster")
    state = read_state(datadir / CLUSTER_STATE_FILE)
    n = args.cluster or len(state.get("nodes", [])) or 3
    ports = list(range(args.port, args.port + n)) if args.port and not state else None
    cluster = KafkaCluster(brokers=n, version=args.version, datadir=datadir, ports=ports)
    if args.command == "start":
        cluster.start(timeout=args.timeout)
        cluster.detach()
        print(cluster.bootstrap)
        print(f"Kafka {cluster.version} cluster of {n}, pids {cluster.pids}, data in "
              f"{cluster.datadir}", file=sys.stderr)  # fmt: skip
        return 0
    if args.command == "stop":
        running = any(node.is_running() for node in cluster.nodes)
        cluster.stop()
        print("stopped" if running else "not running", f"({cluster.bootstrap})")
        return 0
    for node in cluster.nodes:
        what = f"running pid {node.pid}" if node.is_running() else "not running"
        print(f"node {node.node_id} {node.bootstrap}: {what}")
    return 0 if cluster.is_running() else 1


def main() -> None:
    sys.exit(_cli())


if __name__ == "__main__":
    main()
