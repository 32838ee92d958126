"""The launcher's SASL_SSL broker: SCRAM users over TLS, wrong passwords refused at once, ACLs
enforced.

Runs on the session's ``kafka_sasl_broker`` (StandardAuthorizer on, ``admin`` a super user,
``alice`` and ``bob`` with only the ACLs a test grants). Each test uses its own topic.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from eoflow.testing import create_topics
from tools.kafka.kafkactl import KafkaBroker

pytestmark = pytest.mark.integration


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _options(broker: KafkaBroker, user: str = "admin", **kw: Any) -> dict[str, Any]:
    """aiokafka settings for ``user``, without bootstrap_servers (for eoflow.testing)."""
    cfg = broker.client_config(user, **kw)
    del cfg["bootstrap_servers"]
    return cfg


async def _new_topic(broker: KafkaBroker, prefix: str) -> str:
    topic = _uid(prefix)
    await create_topics(broker.bootstrap, {topic: 1}, client_options=_options(broker))
    return topic


async def _read_committed(broker: KafkaBroker, topic: str, user: str, mechanism: str,
                          count: int) -> list[bytes]:  # fmt: skip
    consumer = AIOKafkaConsumer(**broker.client_config(user, mechanism), group_id=None,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        values: list[bytes] = []
        while len(values) < count:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [r.value for r in batch.get(tp, []) if r.value is not None]
        return values
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
async def test_a_scram_user_produces_and_consumes_transactionally_over_tls(
    kafka_sasl_broker: KafkaBroker, mechanism: str
) -> None:
    broker = kafka_sasl_broker
    topic = await _new_topic(broker, "sasl-ok")
    txn_prefix = _uid("alice-txn")
    await asyncio.to_thread(broker.add_acl, "alice", ["Write", "Read", "Describe"], topic=topic)
    await asyncio.to_thread(broker.add_acl, "alice", ["Write", "Describe"],
                            transactional_id=txn_prefix, prefixed=True)  # fmt: skip
    producer = AIOKafkaProducer(**broker.client_config("alice", mechanism),
                                transactional_id=f"{txn_prefix}-1")  # fmt: skip
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"kept")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"end")
    finally:
        await producer.stop()
    values = await asyncio.wait_for(_read_committed(broker, topic, "alice", mechanism, 2), 60)
    assert values == [b"kept", b"end"]


async def test_a_wrong_password_fails_at_once_naming_the_reason(
    kafka_sasl_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    producer = AIOKafkaProducer(
        **kafka_sasl_broker.client_config("alice", "SCRAM-SHA-512", password="not-the-password"))
    caplog.set_level(logging.ERROR, logger="aiokafka")
    try:
        # aiokafka does not retry an authentication failure: start() raises, it does not
        # hang until a timeout. (The 60 s bound only keeps a regression from hanging CI.)
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await asyncio.wait_for(producer.start(), 60)
    finally:
        await producer.stop()
    # The exception only says "Unable to bootstrap"; the reason is in aiokafka's log.
    assert any("SaslAuthenticationFailed" in r.getMessage()
               and "invalid credentials" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]  # fmt: skip


async def test_a_principal_without_write_is_refused(kafka_sasl_broker: KafkaBroker) -> None:
    broker = kafka_sasl_broker
    topic = await _new_topic(broker, "sasl-acl")
    await asyncio.to_thread(broker.add_acl, "bob", ["Read", "Describe"], topic=topic)
    producer = AIOKafkaProducer(**broker.client_config("bob", "SCRAM-SHA-512"))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait(topic, b"not allowed"), 60)
    finally:
        await producer.stop()
    # Read was granted: bob sees the (empty) topic rather than an authorization error.
    consumer = AIOKafkaConsumer(**broker.client_config("bob", "SCRAM-SHA-512"), group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert await consumer.end_offsets([tp]) == {tp: 0}
    finally:
        await consumer.stop()
