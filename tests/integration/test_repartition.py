"""Repartition topics against the real broker: a backfill of old records is never deleted
by retention before it is read, and what a commit consumed is purged.

A record sent to a repartition topic keeps the timestamp of the event it came from (event
time flows downstream). Under Kafka's default ``retention.ms`` (7 days), a segment of
records older than that is deleted as soon as it rolls, whether or not the repartitioned
agent has read it: reprocessing a topic of last month through ``group_by`` would lose
records. eoflow makes its repartition topics keep records until it deletes them itself,
after they are consumed and committed (as Kafka Streams does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import eoflow
from eoflow.testing import create_topics, produce, read_committed, running, wait_for_records

MONTH_AGO_MS = int((time.time() - 30 * 86400) * 1000)


def _app(bootstrap: str, tmp_path: Path, **kwargs: Any) -> eoflow.App:
    return eoflow.App(f"rp-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                      datadir=tmp_path / "data", session_timeout=6.0, commit_interval=0.2,
                      **kwargs)


def _count_by_key(app: eoflow.App) -> tuple[eoflow.Topic[Any, Any], eoflow.Topic[Any, Any]]:
    # The inputs are a month old: the test's own topics keep them (like the repartition
    # topic must), or a retention check of the shared broker could delete them mid-test.
    keep = {"retention.ms": "-1"}
    src = app.topic(f"{app.id}-in", partitions=2, config=keep)
    out = app.topic(f"{app.id}-out", partitions=2, key_serializer="str", config=keep)
    counts = app.Table("counts", default=int, partitions=2)

    @app.agent(src, name="count")
    async def count(stream: eoflow.Stream[bytes, Any]) -> None:
        async for value in stream.group_by(lambda v: v["k"], name="k"):
            counts[value["k"]] += 1
            await out.send(key=value["k"], value=value)

    return src, out


async def _topic_config(bootstrap: str, topic: str, name: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {name: None})
        for response in await admin.describe_configs([resource]):
            for found in response.to_object()["resources"]:
                for entry in found["config_entries"]:
                    if entry["config_names"] == name:
                        return str(entry["config_value"])
    finally:
        await admin.close()
    return None


async def _offsets(bootstrap: str, topic: str, partitions: int,
                   group: str) -> tuple[dict[int, int], dict[int, int]]:
    """Each partition's log start offset, and the group's committed offset."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        starts = await consumer.beginning_offsets(tps)
        committed = {tp.partition: await consumer.committed(tp) or 0 for tp in tps}
        return {tp.partition: offset for tp, offset in starts.items()}, committed
    finally:
        await consumer.stop()


async def test_a_backfill_of_last_month_through_group_by_keeps_its_time_and_every_record(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path)
    src, out = _count_by_key(app)
    repartition = f"{app.id}-count-k-repartition"
    inputs = [(None, json.dumps({"id": i, "k": f"k{i % 5}"}).encode()) for i in range(200)]
    stamps = [MONTH_AGO_MS + i for i in range(200)]
    async with running(app):
        await produce(kafka_bootstrap, src.name, inputs, timestamps_ms=stamps)
        await wait_for_records(kafka_bootstrap, out.name, 200, timeout=30)
    records = await read_committed(kafka_bootstrap, out.name)
    assert sorted(json.loads(r.value)["id"] for r in records) == list(range(200))
    # Event time flowed through the repartition topic to the outputs ...
    assert sorted(r.timestamp for r in records) == stamps
    # ... so the repartition topic must not delete by time: a month-old segment would go
    # at its first roll, read or not.
    assert await _topic_config(kafka_bootstrap, repartition, "retention.ms") == "-1"


async def test_repartition_records_a_commit_consumed_are_deleted(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    app = _app(kafka_bootstrap, tmp_path, repartition_purge_interval=0.5)
    src, out = _count_by_key(app)
    repartition = f"{app.id}-count-k-repartition"
    inputs = [(None, json.dumps({"id": i, "k": f"k{i % 5}"}).encode()) for i in range(200)]
    async with running(app):
        await produce(kafka_bootstrap, src.name, inputs)
        await wait_for_records(kafka_bootstrap, out.name, 200, timeout=30)
        for _ in range(100):
            starts, committed = await _offsets(kafka_bootstrap, repartition, 2, app.id)
            if sum(starts.values()) >= 200 and starts == committed:
                break
            await asyncio.sleep(0.1)
    # All 200 records went through the repartition topic (200 data records, plus a
    # transaction marker per commit); once consumed and committed, they were deleted:
    # each partition's log now starts at the group's committed offset.
    assert sum(committed.values()) >= 200, committed
    assert starts == committed


async def test_a_repartition_topic_made_before_with_time_retention_is_named_at_start(
        kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An older eoflow (or an operator) made the topic with Kafka's default retention:
    eoflow does not change a topic's configs behind the operator's back, it says which."""
    app = _app(kafka_bootstrap, tmp_path)
    src, out = _count_by_key(app)
    repartition = f"{app.id}-count-k-repartition"
    await create_topics(kafka_bootstrap, {repartition: 2})
    with caplog.at_level(logging.WARNING, logger="eoflow._runtime.worker"):
        async with running(app):
            await produce(kafka_bootstrap, src.name, [(None, b'{"id": 0, "k": "a"}')])
            await wait_for_records(kafka_bootstrap, out.name, 1, timeout=30)
    warnings = [r.getMessage() for r in caplog.records if repartition in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "retention.ms=604800000" in warnings[0]
    assert f"--entity-name {repartition} --add-config retention.ms=-1" in warnings[0]
