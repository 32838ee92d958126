"""What the launcher would write and run, checked without starting a JVM: version choice,
server.properties for a single broker, a cluster node and a SASL_SSL broker, the log4j /
log4j2 configs and the CLI's choice of single broker or cluster."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools.kafka import kafkactl
from tools.kafka.kafkactl import (
    KAFKA4_VERSION,
    KAFKA_VERSION,
    KafkaBroker,
    KafkaCluster,
    KafkaError,
    libs_dir,
    resolve_version,
)

# --------------------------------------------------------------------------- versions


def test_default_version_is_the_poms_and_stays_3_9(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EOFLOW_KAFKA_VERSION", raising=False)
    assert KAFKA_VERSION == "3.9.2"
    assert KAFKA4_VERSION.startswith("4.")
    assert resolve_version() == KAFKA_VERSION
    assert resolve_version(None) == KAFKA_VERSION


def test_version_from_argument_env_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EOFLOW_KAFKA_VERSION", "4")
    assert resolve_version() == KAFKA4_VERSION
    assert resolve_version("3") == KAFKA_VERSION  # the argument wins over the env
    assert resolve_version("4.0.2") == "4.0.2"
    for bad in ("5.0.0", "latest", "3.9", "2.8.1"):
        with pytest.raises(KafkaError):
            resolve_version(bad)


def test_each_version_has_its_own_jar_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EOFLOW_KAFKA_CACHE", str(tmp_path))
    assert libs_dir("3") == tmp_path / f"kafka-{KAFKA_VERSION}" / "libs"
    assert libs_dir("4") == tmp_path / f"kafka-{KAFKA4_VERSION}" / "libs"


def test_broker_version_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EOFLOW_KAFKA_VERSION", raising=False)
    (tmp_path / "broker.json").write_text(json.dumps({"port": 1234, "version": KAFKA4_VERSION}))
    assert KafkaBroker(datadir=tmp_path).version == KAFKA4_VERSION  # the data dir's
    assert KafkaBroker(datadir=tmp_path, version="3").version == KAFKA_VERSION
    monkeypatch.setenv("EOFLOW_KAFKA_VERSION", "3")
    assert KafkaBroker(datadir=tmp_path).version == KAFKA_VERSION


def test_a_formatted_data_dir_is_not_started_as_another_version(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("version=1\n")
    (tmp_path / "broker.json").write_text(json.dumps({"port": 1, "controller_port": 2}))
    broker = KafkaBroker(datadir=tmp_path, version="4")
    with pytest.raises(KafkaError, match=r"holds a Kafka 3\.9\.2 broker"):
        broker.launch()


# --------------------------------------------------------------------------- single broker


@pytest.mark.parametrize("version", ["3", "4"])
def test_single_broker_config(tmp_path: Path, version: str) -> None:
    b = KafkaBroker(port=19999, datadir=tmp_path, version=version)
    b.controller_port = 19998
    props = b.server_properties()
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19998"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19999,CONTROLLER://127.0.0.1:19998"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19999"
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                "min.insync.replicas"):  # fmt: skip
        assert props[key] == "1"
    # Kafka 4 has no ZooKeeper: nothing of it may be configured, for either version.
    assert not [k for k in props if "zookeeper" in k or k.startswith("zk.")]
    assert "sasl.enabled.mechanisms" not in props and "authorizer.class.name" not in props
    # The config file is the same dict, one key=value per line.
    path = b.write_config()
    lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")]
    assert dict(x.split("=", 1) for x in lines) == props


def test_log4j_for_kafka3_puts_server_log_in_the_data_dir(tmp_path: Path) -> None:
    b = KafkaBroker(datadir=tmp_path, version="3")
    opt = b._logging_opt(console=False)
    assert opt == f"-Dlog4j.configuration={(tmp_path / 'log4j.properties').as_uri()}"
    text = (tmp_path / "log4j.properties").read_text()
    assert f"log4j.appender.server.File={tmp_path}/logs/server.log" in text
    assert "log4j.rootLogger=INFO, server" in text
    # Every appender a logger names is defined.
    props = dict(x.split("=", 1) for x in text.splitlines())
    named = {v.split(", ")[1] for k, v in props.items() if k.startswith("log4j.logger.")
             and ", " in v}  # fmt: skip
    assert named and all(f"log4j.appender.{a}" in props for a in named)


def test_log4j2_for_kafka4_puts_server_log_in_the_data_dir(tmp_path: Path) -> None:
    b = KafkaBroker(datadir=tmp_path, version="4")
    opt = b._logging_opt(console=False)
    assert opt == f"-Dlog4j2.configurationFile={tmp_path / 'log4j2.xml'}"
    root = ET.parse(tmp_path / "log4j2.xml").getroot()
    files = {a.get("name"): a.get("fileName") for a in root.iter("RollingFile")}
    assert files["server.log"] == f"{tmp_path}/logs/server.log"
    assert files["controller.log"] == f"{tmp_path}/logs/controller.log"
    (root_logger,) = root.iter("Root")
    assert root_logger.get("level") == "INFO"
    assert [r.get("ref") for r in root_logger.iter("AppenderRef")] == ["server.log"]
    refs = {a.get("ref") for a in root.iter("AppenderRef")}
    assert refs <= set(files)
    # The one-shot tools log WARN to stderr, not into the broker's files.
    tool_opt = b._logging_opt(console=True)
    tool = ET.parse(tool_opt.split("=", 1)[1]).getroot()
    assert [c.get("target") for c in tool.iter("Console")] == ["SYSTEM_ERR"]


# --------------------------------------------------------------------------- SASL_SSL


def test_sasl_ssl_broker_config(tmp_path: Path) -> None:
    b = KafkaBroker(port=20001, datadir=tmp_path, security="sasl_ssl", authorizer=True)
    b.controller_port = 20002
    props = b.server_properties()
    assert props["listeners"] == "SASL_SSL://127.0.0.1:20001,CONTROLLER://127.0.0.1:20002"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:20001"
    assert props["listener.security.protocol.map"] == (
        "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == (
        "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    )
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["ssl.truststore.location"] == str(tmp_path / "tls" / "ca.pem")
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["super.users"] == "User:broker;User:admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert set(b.users) == {"admin", "alice", "bob"}
    plain = props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    for user, password in b.users.items():
        assert f'user_{user}="{password}"' in plain
    # SCRAM users are created at format time, both mechanisms, the broker's own included.
    assert b.sasl is not None
    args = b.sasl.format_args()
    assert args.count("--add-scram") == 8
    assert f"SCRAM-SHA-256=[name=alice,password={b.users['alice']}]" in args
    # The passwords are kept with the data dir (they are in the metadata log from then on).
    b._write_state()
    again = KafkaBroker(datadir=tmp_path)
    assert again.security == "sasl_ssl" and again.authorizer
    assert again.users == b.users
    assert again.bootstrap == b.bootstrap
    # Clients need the CA, which the first start makes: until then, a clear error.
    with pytest.raises(KafkaError, match="no CA certificate"):
        again.client_config("alice", "SCRAM-SHA-512")


def test_authorizer_needs_sasl(tmp_path: Path) -> None:
    with pytest.raises(KafkaError):
        KafkaBroker(datadir=tmp_path, authorizer=True)
    with pytest.raises(KafkaError):
        KafkaBroker(datadir=tmp_path, security="kerberos")
    assert KafkaBroker(datadir=tmp_path).users == {}


# --------------------------------------------------------------------------- cluster


@pytest.mark.parametrize("version", ["3", "4"])
def test_cluster_node_config(tmp_path: Path, version: str) -> None:
    c = KafkaCluster(brokers=3, version=version, datadir=tmp_path)
    ports = [n.port for n in c.nodes] + [n.controller_port for n in c.nodes]
    assert len(set(ports)) == 6 and 9092 not in ports
    assert [n.node_id for n in c.nodes] == [1, 2, 3]
    assert c.broker(0).node_id == 1 and c.node(3) is c.broker(2)
    assert c.bootstrap == ",".join(f"127.0.0.1:{n.port}" for n in c.nodes)
    voters = c.voters.split(",")
    assert voters == [f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in c.nodes]
    for n in c.nodes:
        props = n.server_properties()
        assert props["node.id"] == str(n.node_id)
        assert props["process.roles"] == "broker,controller"
        assert props["controller.quorum.voters"] == c.voters
        assert props["log.dirs"] == str(tmp_path / f"node-{n.node_id}" / "data")
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert n.heap == "384m" and n.min_heap == "128m"
        assert n.version == c.version
    # Node handles and the shared cluster id come back from the data dir.
    c._write_state()
    again = KafkaCluster(brokers=3, datadir=tmp_path)
    assert again.bootstrap == c.bootstrap and again.voters == c.voters
    assert again.cluster_id == c.cluster_id and again.version == c.version
    with pytest.raises(KafkaError):
        KafkaCluster(brokers=5, datadir=tmp_path)


def test_small_clusters_lower_the_replication_factor(tmp_path: Path) -> None:
    (node,) = KafkaCluster(brokers=1, datadir=tmp_path).nodes
    settings = node.server_properties()
    assert settings["default.replication.factor"] == "1"
    assert settings["min.insync.replicas"] == "1"
    settings = KafkaCluster(brokers=2, datadir=tmp_path / "two").broker(0).server_properties()
    assert settings["transaction.state.log.replication.factor"] == "2"
    assert settings["transaction.state.log.min.isr"] == "1"


def test_cli_status_of_nothing_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kafkactl._cli(["status", "--datadir", str(tmp_path / "one")]) == 1
    assert "not running" in capsys.readouterr().out
    assert kafkactl._cli(["status", "--cluster", "3", "--datadir", str(tmp_path / "c")]) == 1
    out = capsys.readouterr().out
    assert out.count("not running") == 3
    assert kafkactl._cli(["stop", "--datadir", str(tmp_path / "c")]) == 0
    assert kafkactl._cli(["start", "--cluster", "3", "--security", "sasl_ssl",
                          "--datadir", str(tmp_path / "c")]) == 1  # fmt: skip
