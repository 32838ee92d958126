"""The launcher runs Kafka 4.x, and eoflow's client (aiokafka) does transactions on it.

Always Kafka 4 (whatever ``EOFLOW_KAFKA_VERSION`` says), on a broker of this module's own.
Kafka 4 clusters are created with ``transaction.version=2`` finalized (KIP-890 part 2), but
aiokafka speaks the version 0 transaction requests, so its transactions stay on protocol v1:
the producer epoch is not bumped at every commit. The last test pins that down.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from eoflow.testing import create_topics, read_committed
from tools.kafka.kafkactl import KAFKA4_VERSION, KafkaBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(datadir=tmp_path_factory.mktemp("kafka4"), version="4", heap="384m")
    try:
        broker.start(timeout=120)
        yield broker
    finally:
        broker.stop()


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_broker_runs_the_kafka4_jars_and_logs_through_log4j2(kafka4: KafkaBroker) -> None:
    assert kafka4.version == KAFKA4_VERSION
    assert f"kafka-{KAFKA4_VERSION}/libs" in Path(f"/proc/{kafka4.pid}/cmdline").read_text()
    server_log = (kafka4.log_dir / "server.log").read_text()
    assert f"Kafka version: {KAFKA4_VERSION}" in server_log
    assert "Kafka Server started" in server_log


async def test_transactional_produce_and_read_committed(kafka4: KafkaBroker) -> None:
    topic = _uid("kafka4-txn")
    await create_topics(kafka4.bootstrap, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=kafka4.bootstrap,
                                transactional_id=_uid("kafka4-txn"))  # fmt: skip
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(4):
                await producer.send(topic, f"committed-{i}".encode(), partition=i % 2)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-last", partition=1)
    finally:
        await producer.stop()

    records = await read_committed(kafka4.bootstrap, topic)

    by_partition = {p: [r.value for r in records if r.partition == p] for p in (0, 1)}
    assert by_partition == {0: [b"committed-0", b"committed-2"],
                            1: [b"committed-1", b"committed-3", b"committed-last"]}  # fmt: skip


def _describe(broker: KafkaBroker, tool: str, *args: str) -> str:
    proc = broker.run_tool(f"org.apache.kafka.tools.{tool}",
                           ["--bootstrap-server", broker.bootstrap, *args])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_transaction_version_2_is_finalized_but_aiokafka_commits_on_v1(
    kafka4: KafkaBroker,
) -> None:
    features = _describe(kafka4, "FeatureCommand", "describe")
    level = re.search(r"Feature: transaction\.version\s.*FinalizedVersionLevel: (\d+)", features)
    assert level is not None, features
    assert level.group(1) == "2"

    topic, txn_id = _uid("kafka4-tv"), _uid("kafka4-tv")
    await create_topics(kafka4.bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=kafka4.bootstrap, transactional_id=txn_id)
    await producer.start()
    epochs = []
    try:
        for i in range(3):
            async with producer.transaction():
                await producer.send_and_wait(topic, str(i).encode())
            epochs.append(_producer_epoch(_describe(
                kafka4, "TransactionsCommand", "describe", "--transactional-id", txn_id)))
    finally:
        await producer.stop()
    # Transaction protocol v2 would bump the epoch at every commit (KIP-890); v1 keeps it.
    assert epochs == [epochs[0]] * 3


def _producer_epoch(describe_output: str) -> int:
    """ProducerEpoch from ``kafka-transactions describe`` (a header line and one row; the
    last column, TopicPartitions, is empty once the transaction is complete)."""
    header, row = (line.split() for line in describe_output.strip().splitlines()[:2])
    fields = dict(zip(header, row, strict=False))
    assert fields["TransactionState"] == "CompleteCommit", describe_output
    return int(fields["ProducerEpoch"])
