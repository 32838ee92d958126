"""The local broker really does Kafka transactions: the ground eoflow's exactly-once stands on.

These tests check the broker (and aiokafka), not eoflow: commit/abort visibility under both
isolation levels, and that offsets sent with ``send_offsets_to_transaction`` only become the
group's committed offset when the transaction commits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

pytestmark = pytest.mark.integration

SENTINEL = b"end"


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def txn_producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=_uid("test-txn"),
        enable_idempotence=True,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def read_until_sentinel(
    bootstrap: str, topic: str, isolation_level: str, timeout: float = 20.0
) -> list[bytes]:
    """All values of partition 0 from the beginning up to and including SENTINEL."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while SENTINEL not in values:
            if loop.time() > deadline:
                raise AssertionError(f"{isolation_level}: no sentinel after {timeout}s: {values}")
            batches = await consumer.getmany(tp, timeout_ms=500)
            values.extend(msg.value for msg in batches.get(tp, []) if msg.value is not None)
        return values
    finally:
        await consumer.stop()


async def test_read_committed_sees_only_committed_records(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    txn_producer: AIOKafkaProducer,
) -> None:
    topic = topic_factory(1)

    async with txn_producer.transaction():
        await txn_producer.send_and_wait(topic, b"committed-1")
        await txn_producer.send_and_wait(topic, b"committed-2")

    await txn_producer.begin_transaction()
    await txn_producer.send_and_wait(topic, b"aborted-1")
    await txn_producer.send_and_wait(topic, b"aborted-2")
    await txn_producer.abort_transaction()

    async with txn_producer.transaction():
        await txn_producer.send_and_wait(topic, SENTINEL)

    committed = await read_until_sentinel(kafka_bootstrap, topic, "read_committed")
    uncommitted = await read_until_sentinel(kafka_bootstrap, topic, "read_uncommitted")

    assert committed == [b"committed-1", b"committed-2", SENTINEL]
    assert uncommitted == [b"committed-1", b"committed-2", b"aborted-1", b"aborted-2", SENTINEL]


async def test_open_transaction_is_invisible_to_read_committed(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    txn_producer: AIOKafkaProducer,
) -> None:
    """read_committed stops at the last stable offset while a transaction is still open."""
    topic = topic_factory(1)
    async with txn_producer.transaction():
        await txn_producer.send_and_wait(topic, b"before")

    await txn_producer.begin_transaction()
    await txn_producer.send_and_wait(topic, b"pending")

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, isolation_level="read_committed", group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen: list[bytes | None] = []
        for _ in range(6):
            batches = await consumer.getmany(tp, timeout_ms=250)
            seen.extend(m.value for m in batches.get(tp, []))
        assert seen == [b"before"]
    finally:
        await consumer.stop()
        await txn_producer.commit_transaction()

    values = await read_until_sentinel_after_commit(kafka_bootstrap, topic, txn_producer)
    assert values == [b"before", b"pending", SENTINEL]


async def read_until_sentinel_after_commit(
    bootstrap: str, topic: str, producer: AIOKafkaProducer
) -> list[bytes]:
    async with producer.transaction():
        await producer.send_and_wait(topic, SENTINEL)
    return await read_until_sentinel(bootstrap, topic, "read_committed")


async def _group_offset(admin: AIOKafkaAdminClient, group: str, tp: TopicPartition) -> int | None:
    offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    meta = offsets.get(tp)
    if meta is None or meta.offset < 0:
        return None
    return int(meta.offset)


async def _wait_group_offset(
    admin: AIOKafkaAdminClient, group: str, tp: TopicPartition, expected: int, timeout: float = 10
) -> int | None:
    """Poll until the committed offset equals ``expected`` (the commit markers are written
    asynchronously after EndTxn returns); returns the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await _group_offset(admin, group, tp)
        if got == expected or loop.time() > deadline:
            return got
        await asyncio.sleep(0.1)


async def _observe_group_offset(
    admin: AIOKafkaAdminClient, group: str, tp: TopicPartition, seconds: float = 2.0
) -> set[int | None]:
    """All values the committed offset takes during ``seconds``."""
    seen: set[int | None] = set()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        seen.add(await _group_offset(admin, group, tp))
        await asyncio.sleep(0.1)
    return seen


async def test_send_offsets_to_transaction_moves_group_offset_only_on_commit(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    txn_producer: AIOKafkaProducer,
) -> None:
    source = topic_factory(1, name="source")
    sink = topic_factory(1, name="sink")
    group = _uid("test-group")
    tp = TopicPartition(source, 0)

    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await plain.start()
    try:
        for i in range(10):
            await plain.send_and_wait(source, f"in-{i}".encode())
    finally:
        await plain.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert await _group_offset(admin, group, tp) is None

        # Aborted: the offset must not move.
        await txn_producer.begin_transaction()
        await txn_producer.send_and_wait(sink, b"out-aborted")
        await txn_producer.send_offsets_to_transaction({tp: 3}, group)
        await txn_producer.abort_transaction()
        assert await _observe_group_offset(admin, group, tp) == {None}

        # Committed: the offset moves to exactly what was sent.
        async with txn_producer.transaction():
            await txn_producer.send_and_wait(sink, b"out-committed")
            await txn_producer.send_offsets_to_transaction({tp: 4}, group)
        assert await _wait_group_offset(admin, group, tp, 4) == 4

        # Aborted again: stays at the last committed value.
        await txn_producer.begin_transaction()
        await txn_producer.send_offsets_to_transaction({tp: 9}, group)
        await txn_producer.abort_transaction()
        assert await _observe_group_offset(admin, group, tp) == {4}
    finally:
        await admin.close()

    # A consumer of the group resumes from the transactionally committed offset.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        assert await consumer.committed(tp) == 4
    finally:
        await consumer.stop()

    values = await read_until_sentinel_after_commit(kafka_bootstrap, sink, txn_producer)
    assert values == [b"out-committed", SENTINEL]
