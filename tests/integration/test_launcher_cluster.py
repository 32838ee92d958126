"""The launcher's three-node KRaft cluster: replication really configured, and transactions
still committing after one node is killed with SIGKILL.

Runs on the session's ``kafka_cluster`` (Kafka version as ``EOFLOW_KAFKA_VERSION`` says).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from eoflow.testing import create_topics, read_committed
from tools.kafka.kafkactl import KafkaCluster

pytestmark = pytest.mark.integration

INTERNAL_TOPICS = ("__transaction_state", "__consumer_offsets")


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _configs(bootstrap: str, kind: ConfigResourceType, names: list[str],
                   keys: list[str]) -> dict[str, dict[str, str]]:  # fmt: skip
    """``{resource name: {key: value}}`` as the brokers report them (effective values).

    Asks again while a node answers with an error: the node asked may not have applied the
    metadata of a topic created a moment ago (UNKNOWN_TOPIC_OR_PARTITION).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + 30
    try:
        while True:
            responses = await admin.describe_configs(
                [ConfigResource(kind, name, configs=dict.fromkeys(keys)) for name in names])
            out: dict[str, dict[str, str]] = {}
            errors = []
            for response in responses:
                for code, msg, _type, name, entries in response.resources:
                    if code:
                        errors.append((name, code, msg))
                    out[name] = {entry[0]: entry[1] for entry in entries}
            if not errors:
                return out
            assert time.monotonic() < deadline, errors
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def _settled_metadata(cluster: KafkaCluster, topics: list[str],
                      timeout: float = 30.0) -> dict[str, Any]:
    """Topic metadata once every topic is known, with partitions and a full ISR.

    The node asked may not have applied a topic created a moment ago (it answers
    UNKNOWN_TOPIC_OR_PARTITION, no partitions: 1 CI run in about 15), nor the followers'
    catching up: ask again until it has, then return what it says.
    """
    deadline = time.monotonic() + timeout
    while True:
        metadata: dict[str, Any] = cluster.metadata(topics)["topics"]
        settled = all(
            name in metadata and metadata[name]["error"] == 0 and metadata[name]["partitions"]
            and all(len(p["isr"]) == len(p["replicas"])
                    for p in metadata[name]["partitions"].values())
            for name in topics)
        if settled or time.monotonic() > deadline:
            return metadata
        time.sleep(0.2)


async def test_topics_and_internal_topics_have_rf_3_and_min_insync_2(
    kafka_cluster: KafkaCluster,
) -> None:
    topic = _uid("cluster-rf")
    await create_topics(kafka_cluster.bootstrap, {topic: 2}, replication_factor=3)

    metadata = _settled_metadata(kafka_cluster, [topic, *INTERNAL_TOPICS])
    for name in (topic, *INTERNAL_TOPICS):
        partitions = metadata[name]["partitions"].values()
        assert partitions, name
        for p in partitions:
            assert sorted(p["replicas"]) == [1, 2, 3], (name, p)
            assert sorted(p["isr"]) == [1, 2, 3], (name, p)
    # The topic inherits min.insync.replicas from the brokers; __transaction_state has it
    # as a topic config (transaction.state.log.min.isr).
    topics = await _configs(kafka_cluster.bootstrap, ConfigResourceType.TOPIC,
                            [topic, *INTERNAL_TOPICS], ["min.insync.replicas"])  # fmt: skip
    assert {name: c["min.insync.replicas"] for name, c in topics.items()} == {
        topic: "2", "__transaction_state": "2", "__consumer_offsets": "2"}
    brokers = await _configs(kafka_cluster.bootstrap, ConfigResourceType.BROKER, ["1", "2", "3"],
                             ["default.replication.factor", "min.insync.replicas"])  # fmt: skip
    assert brokers == {str(n): {"default.replication.factor": "3", "min.insync.replicas": "2"}
                       for n in (1, 2, 3)}  # fmt: skip


async def _commit(producer: AIOKafkaProducer, topic: str, *values: bytes) -> None:
    async with producer.transaction():
        for value in values:
            await producer.send(topic, value)


async def test_a_transaction_commits_with_its_coordinator_killed(
    kafka_cluster: KafkaCluster,
) -> None:
    topic, txn_id = _uid("cluster-kill"), _uid("cluster-kill")
    await create_topics(kafka_cluster.bootstrap, {topic: 1}, replication_factor=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_cluster.bootstrap,
                                transactional_id=txn_id)  # fmt: skip
    await producer.start()
    killed = None
    try:
        await _commit(producer, topic, b"before-1", b"before-2")
        coordinator = kafka_cluster.coordinator_of("transaction", txn_id)
        killed = kafka_cluster.node(coordinator)
        pid = killed.pid
        await asyncio.to_thread(killed.kill)
        assert pid is not None and not _alive(pid)

        # The same producer finds the new coordinator (the state is replicated) and the
        # partition still has 2 in-sync replicas, enough for min.insync.replicas=2.
        await _commit(producer, topic, b"after-kill")
        assert kafka_cluster.coordinator_of("transaction", txn_id) != coordinator
        assert [r.value for r in await read_committed(kafka_cluster.bootstrap, topic)] == [
            b"before-1", b"before-2", b"after-kill"]

        await asyncio.to_thread(killed.start, 120)
        await asyncio.to_thread(kafka_cluster.wait_in_sync, 120)
        assert sorted(_partition(kafka_cluster, topic)["isr"]) == [1, 2, 3]
        await _commit(producer, topic, b"after-restart")
    finally:
        await producer.stop()
        if killed is not None and not killed.is_running():  # leave three nodes behind
            await asyncio.to_thread(killed.start, 120)
            await asyncio.to_thread(kafka_cluster.wait_in_sync, 120)
    assert [r.value for r in await read_committed(kafka_cluster.bootstrap, topic)] == [
        b"before-1", b"before-2", b"after-kill", b"after-restart"]


def _partition(cluster: KafkaCluster, topic: str) -> dict[str, Any]:
    return dict(cluster.metadata([topic])["topics"][topic]["partitions"][0])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
