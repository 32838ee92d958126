"""What a node is started with: its ``server.properties``, cluster id and log4j (Kafka 3) or
log4j2 (Kafka 4) configuration. Pure functions of a :class:`NodeSpec`; the broker writes them to its
data dir on every start.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from tools.kafka._process import HOST


@dataclass(frozen=True)
class NodeSpec:
    """One KRaft node (combined broker+controller) as the config sees it."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    #: The KRaft quorum, "1@127.0.0.1:PORT,..."; every node of a cluster has the same.
    voters: str
    #: Default replication factor of topics and internal topics (1 single, 3 cluster); the
    #: minimum in-sync replicas is one less (at least 1).
    replication_factor: int = 1

    @property
    def min_insync(self) -> int:
        return max(1, self.replication_factor - 1)


def server_properties(node: NodeSpec) -> dict[str, str]:
    """A PLAINTEXT node's server.properties (SASL_SSL overlays its own on top)."""
    p, c, rf, isr = node.port, node.controller_port, node.replication_factor, node.min_insync
    settings = {
        # KRaft, combined broker+controller, loopback only.
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": node.voters,
        "listeners": f"PLAINTEXT://{HOST}:{p},CONTROLLER://{HOST}:{c}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{p}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.data_dir),
        "num.partitions": "1",
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(isr),
        "offsets.topic.replication.factor": str(rf),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(isr),
        "transaction.state.log.num.partitions": "4",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        # Fast groups and fast abort of timed-out transactions (tests rely on this).
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "transaction.remove.expired.transaction.cleanup.interval.ms": "10000",
        # Small footprint.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.cleaner.threads": "1",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.retention.hours": "168",
        "log.retention.check.interval.ms": "300000",
    }
    if "," in node.voters:
        settings.update(_MULTI_NODE)
    return settings


#: A node of a cluster: several JVMs on few cores, so fewer threads; and a dead node is
#: fenced within 6 s, so a killed broker's partitions move on quickly.
_MULTI_NODE = {
    "num.io.threads": "2",
    "background.threads": "2",
    "num.replica.fetchers": "1",
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
}


def new_cluster_id() -> str:
    """A random Kafka cluster id (base64url of a UUID). Like Kafka's ``Uuid.randomUuid()``,
    never one starting with "-": StorageTool's argument parser would read it as an option
    (about 1 start in 64 failed with "argument --cluster-id/-t: expected one argument")."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def props_text(settings: dict[str, str]) -> str:
    """A .properties body. Values are written as is: the ones generated here contain no
    backslashes or newlines (JAAS lines are single-line, paths are POSIX)."""
    return "".join(f"{k}={v}\n" for k, v in settings.items())


# --------------------------------------------------------------------------- logging

_PATTERN = "[%d] %p %m (%c)%n"
#: Where each family of broker logs goes besides server.log: (logger, file, level).
_LOG_ROUTES = (
    ("kafka.request.logger", "kafka-request.log", "WARN"),
    ("kafka.network.RequestChannel$", "kafka-request.log", "WARN"),
    ("org.apache.kafka.controller", "controller.log", "INFO"),
    ("kafka.controller", "controller.log", "INFO"),
    ("kafka.log.LogCleaner", "log-cleaner.log", "INFO"),
    ("org.apache.kafka.storage.internals.log.LogCleaner", "log-cleaner.log", "INFO"),
    ("state.change.logger", "state-change.log", "INFO"),
)
_LOG_FILES = tuple(dict.fromkeys(["server.log", *(f for _, f, _ in _LOG_ROUTES)]))


def log4j_properties(log_dir: Path) -> str:
    """Kafka 3 (log4j 1 / reload4j): server.log plus one file per route, 20 MB x 2 each."""
    def appender(file: str) -> str:  # "state-change.log" -> "state_change"
        return file.removesuffix(".log").replace("-", "_")

    lines = ["log4j.rootLogger=INFO, server", "log4j.logger.org.apache.kafka=INFO"]
    for file in _LOG_FILES:
        a = f"log4j.appender.{appender(file)}"
        lines += [
            f"{a}=org.apache.log4j.RollingFileAppender",
            f"{a}.File={log_dir.as_posix()}/{file}",
            f"{a}.MaxFileSize=20MB",
            f"{a}.MaxBackupIndex=2",
            f"{a}.layout=org.apache.log4j.PatternLayout",
            f"{a}.layout.ConversionPattern={_PATTERN}",
        ]
    for logger, file, level in _LOG_ROUTES:
        lines += [f"log4j.logger.{logger}={level}, {appender(file)}",
                  f"log4j.additivity.{logger}=false"]
    return "\n".join(lines) + "\n"


def log4j2_xml(log_dir: Path) -> str:
    """Kafka 4 (log4j2): the same files and routes as :func:`log4j_properties`."""
    logs = xml_escape(log_dir.as_posix())
    appenders = "".join(
        f'    <RollingFile name="{file}" fileName="{logs}/{file}" filePattern="{logs}/{file}.%i">\n'
        f'      <PatternLayout pattern="{_PATTERN}"/>\n'
        '      <Policies><SizeBasedTriggeringPolicy size="20MB"/></Policies>\n'
        '      <DefaultRolloverStrategy max="2"/>\n'
        "    </RollingFile>\n"
        for file in _LOG_FILES
    )
    loggers = "".join(
        f'    <Logger name="{xml_escape(logger)}" level="{level}" additivity="false">'
        f'<AppenderRef ref="{file}"/></Logger>\n'
        for logger, file, level in _LOG_ROUTES
    )
    return _log4j2_document(
        appenders,
        '    <Root level="INFO"><AppenderRef ref="server.log"/></Root>\n'
        '    <Logger name="org.apache.kafka" level="INFO"/>\n' + loggers,
    )


def tool_log4j_properties() -> str:
    """For the one-shot tools (StorageTool, AclCommand): WARN and above to stderr."""
    return (
        "log4j.rootLogger=WARN, stderr\n"
        "log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stderr.Target=System.err\n"
        "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
        f"log4j.appender.stderr.layout.ConversionPattern={_PATTERN}\n"
    )


def tool_log4j2_xml() -> str:
    return _log4j2_document(
        '    <Console name="stderr" target="SYSTEM_ERR">\n'
        f'      <PatternLayout pattern="{_PATTERN}"/>\n'
        "    </Console>\n",
        '    <Root level="WARN"><AppenderRef ref="stderr"/></Root>\n',
    )


def _log4j2_document(appenders: str, loggers: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Configuration status="WARN">\n'
        f"  <Appenders>\n{appenders}  </Appenders>\n"
        f"  <Loggers>\n{loggers}  </Loggers>\n"
        "</Configuration>\n"
    )


# --------------------------------------------------------------------------- state files


def read_state(path: Path) -> dict[str, Any]:
    """A JSON state file (ports, version, ...), or {} if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it may hold passwords)."""
    path.write_text(text)
    path.chmod(0o600)
