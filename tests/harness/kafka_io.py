"""Small Kafka helpers for the harness: create topics, read a topic to its end."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

__all__ = ["TopicRead", "create_topics", "partitions_of", "read_topic"]

#: aiokafka is untyped: a ``ConsumerRecord[bytes, bytes]``.
Record: TypeAlias = Any


async def create_topics(bootstrap: str, topics: dict[str, int],
                        config: dict[str, dict[str, str]] | None = None,
                        timeout: float = 30.0) -> None:
    """Create ``{name: partitions}`` (existing topics are fine); wait for leaders."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        new = [NewTopic(name, num_partitions=n, replication_factor=1,
                        topic_configs=(config or {}).get(name)) for name, n in topics.items()]
        resp = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
        for topic, code, *rest in resp.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"create topic {topic!r} failed: error {code} {rest}")
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics(list(topics))
            if all(t["error_code"] == 0 and t["partitions"]
                   and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {list(topics)} have no leaders after {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str,
                        timeout: float = 20.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic!r} not found")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


@dataclass
class TopicRead:
    """A topic read from the beginning: records per partition, in offset order."""

    topic: str
    records: dict[int, list[Record]] = field(default_factory=dict)
    #: Partitions whose read_committed position never reached the high watermark (an
    #: open or hanging transaction): ``partition -> (position, high watermark)``.
    unfinished: dict[int, tuple[int, int]] = field(default_factory=dict)

    def all(self) -> list[Record]:
        return [r for p in sorted(self.records) for r in self.records[p]]


async def read_topic(bootstrap: str, topic: str, *, committed: bool = True,
                     timeout: float = 60.0) -> TopicRead:
    """Read ``topic`` from the beginning to its high watermark.

    With ``committed`` the reader is ``read_committed``: its position can reach the high
    watermark only when every transaction on the partition has finished (committed or
    aborted); partitions that do not get there within ``timeout`` are reported.
    """
    isolation = "read_committed" if committed else "read_uncommitted"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        highs = await _high_watermarks(bootstrap, tps)
        result = TopicRead(topic, {tp.partition: [] for tp in tps})
        deadline = time.monotonic() + timeout
        left = set(tps)
        while left and time.monotonic() < deadline:
            batch = await consumer.getmany(*left, timeout_ms=500, max_records=10000)
            for tp, records in batch.items():
                result.records[tp.partition].extend(records)
            for tp in list(left):
                if await consumer.position(tp) >= highs[tp]:
                    left.discard(tp)
        for tp in left:
            result.unfinished[tp.partition] = (await consumer.position(tp), highs[tp])
        return result
    finally:
        await consumer.stop()


async def _high_watermarks(bootstrap: str,
                           tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                isolation_level="read_uncommitted")
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)  # type: ignore[no-any-return]
    finally:
        await consumer.stop()
