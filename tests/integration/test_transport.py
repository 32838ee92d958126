"""KIP-447 against the real broker: stale generations are refused, pending offsets wait."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eoflow._transport.base import GroupMetadata, TopicPartition
from eoflow._transport.consumer import KafkaGroupConsumer
from eoflow._transport.producer import TransactionalProducer
from eoflow.errors import CommitFailedError

Member = tuple[KafkaGroupConsumer, str, str]


class _Listener:
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


@pytest.fixture
async def member(kafka_bootstrap: str, topic_factory: Any) -> AsyncIterator[Member]:
    """eoflow's group consumer, joined to a fresh group on a fresh topic (static member)."""
    topic = topic_factory(1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = KafkaGroupConsumer(bootstrap=kafka_bootstrap, group_id=group,
                                  instance_id="inst-1", client_id="test",
                                  session_timeout=10.0, max_poll_interval=300.0)
    consumer.subscribe([topic], _Listener())
    await consumer.start()
    try:
        for _ in range(100):
            await consumer.fetch(0.1, 10)
            if consumer.assignment():
                break
        assert consumer.assignment(), "the consumer never joined its group"
        yield consumer, group, topic
    finally:
        await consumer.stop()


async def _producer(bootstrap: str) -> TransactionalProducer:
    producer = TransactionalProducer(bootstrap, f"tx-{uuid.uuid4().hex[:8]}",
                                     transaction_timeout_ms=30000, client_id="test")
    await producer.start()
    return producer


async def _committed(consumer: KafkaGroupConsumer, tp: TopicPartition) -> int:
    return (await consumer.committed_offsets([tp], timeout=10.0))[tp]


async def test_commit_with_current_generation_moves_offsets(
        kafka_bootstrap: str, member: Member) -> None:
    consumer, _group, topic = member
    tp = TopicPartition(topic, 0)
    meta = consumer.group_metadata()
    assert meta.generation_id >= 1 and meta.member_id
    producer = await _producer(kafka_bootstrap)
    try:
        await producer.begin()
        await producer.send_offsets({tp: 42}, meta)
        await producer.commit()
    finally:
        await producer.close()
    assert await _committed(consumer, tp) == 42


@pytest.mark.parametrize("stale", ["old_generation", "unknown_member"])
async def test_stale_member_cannot_commit_offsets(kafka_bootstrap: str, member: Member,
                                              stale: str) -> None:
    """A zombie's commit is refused by the group coordinator (KIP-447 fencing)."""
    consumer, group, topic = member
    tp = TopicPartition(topic, 0)
    meta = consumer.group_metadata()
    if stale == "old_generation":
        zombie = GroupMetadata(group, meta.generation_id - 1 if meta.generation_id > 1
                               else meta.generation_id + 7, meta.member_id, "inst-1")
    else:
        zombie = GroupMetadata(group, meta.generation_id, "someone-else", None)
    producer = await _producer(kafka_bootstrap)
    try:
        await producer.begin()
        with pytest.raises(CommitFailedError):
            await producer.send_offsets({tp: 7}, zombie)
        await producer.reset()  # the only safe way out of an abortable error
    finally:
        await producer.close()
    assert await _committed(consumer, tp) == -1


async def test_generation_minus_one_is_refused_before_sending(kafka_bootstrap: str) -> None:
    producer = await _producer(kafka_bootstrap)
    try:
        await producer.begin()
        with pytest.raises(CommitFailedError, match="disable zombie fencing"):
            await producer.send_offsets({TopicPartition("t", 0): 1},
                                        GroupMetadata("g", -1, "", None))
    finally:
        await producer.close()


async def test_stable_offsets_wait_for_the_pending_transaction(
        kafka_bootstrap: str, member: Member) -> None:
    consumer, _group, topic = member
    tp = TopicPartition(topic, 0)
    producer = await _producer(kafka_bootstrap)
    try:
        await producer.begin()
        await producer.send_offsets({tp: 5}, consumer.group_metadata())
        fetch = asyncio.create_task(consumer.committed_offsets([tp], timeout=30.0))
        await asyncio.sleep(1.0)
        assert not fetch.done(), "require_stable must wait while offsets are pending"
        await producer.commit()
        assert (await asyncio.wait_for(fetch, 10))[tp] == 5
    finally:
        await producer.close()


async def test_reset_aborts_the_open_transaction(kafka_bootstrap: str, topic_factory: Any) -> None:
    """After reset, records of the abandoned transaction never become visible."""
    from eoflow.testing import read_committed

    topic = topic_factory(1)
    producer = await _producer(kafka_bootstrap)
    try:
        await producer.begin()
        fut = await producer.send(topic, b"abandoned")
        await fut
        await producer.reset()
        await producer.begin()
        await (await producer.send(topic, b"kept"))
        await producer.commit()
    finally:
        await producer.close()
    values = [r.value for r in await read_committed(kafka_bootstrap, topic)]
    assert values == [b"kept"]
