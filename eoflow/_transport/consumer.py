"""The group consumer: static membership, read_committed, stable committed offsets.

``fetch_stable_offsets`` asks the group coordinator with ``OffsetFetch`` v7 and
``require_stable``: while another member's transaction that holds offsets for these
partitions is still open, the broker answers ``UNSTABLE_OFFSET_COMMIT`` and we wait,
instead of starting from an offset that transaction is about to move (KIP-447).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import TopicPartition

from eoflow.errors import CommitFailedError, TransportError

from .protocol import GroupMetadata, offset_fetch_request

__all__ = ["create_group_consumer", "fetch_stable_offsets", "group_metadata", "subscribe"]

log = logging.getLogger(__name__)

_UNSTABLE_OFFSET_COMMIT = 88
_COORDINATOR_MOVED = {14, 15, 16}


def create_group_consumer(
    *,
    bootstrap: str,
    group_id: str,
    instance_id: str,
    client_id: str,
    session_timeout_ms: int,
    max_poll_interval_ms: int,
) -> AIOKafkaConsumer:
    """A consumer that never commits by itself and reads only committed records.

    The range assignor gives the same partition numbers of equally partitioned topics to the
    same member, which is what co-partitioned tables need.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        group_instance_id=instance_id,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 5),
        max_poll_interval_ms=max_poll_interval_ms,
        partition_assignment_strategy=(RangePartitionAssignor,),
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=1024 * 1024,
    )
    return consumer


def subscribe(consumer: AIOKafkaConsumer, topics: Iterable[str],
              listener: ConsumerRebalanceListener) -> None:
    """Subscribe with the rebalance listener that keeps partition moves exactly-once."""
    consumer.subscribe(topics=sorted(set(topics)), listener=listener)


def group_metadata(consumer: AIOKafkaConsumer, group_id: str, instance_id: str) -> GroupMetadata:
    """The generation and member id the consumer holds right now (take it at assignment)."""
    coordinator = consumer._coordinator
    return GroupMetadata(
        group_id=group_id,
        generation_id=int(coordinator.generation),
        member_id=str(coordinator.member_id),
        group_instance_id=instance_id,
    )


async def fetch_stable_offsets(
    consumer: AIOKafkaConsumer,
    group_id: str,
    partitions: Iterable[TopicPartition],
    *,
    timeout: float = 120.0,
) -> dict[TopicPartition, int]:
    """Committed offsets of ``partitions``; -1 where the group has none.

    Waits while a pending transaction holds offsets for them, up to ``timeout`` seconds
    (the broker resolves it at the latest when the transaction times out).
    """
    wanted = sorted(partitions)
    if not wanted:
        return {}
    client = consumer._client
    deadline = time.monotonic() + timeout
    while True:
        node_id = await client.coordinator_lookup(CoordinationType.GROUP, group_id)
        request = offset_fetch_request(group_id, [(tp.topic, tp.partition) for tp in wanted])
        response = await client.send(node_id, request, group=ConnectionGroup.COORDINATION)
        result, retry_code = _parse_offsets(response)
        if retry_code is None:
            return {tp: result.get(tp, -1) for tp in wanted}
        if time.monotonic() > deadline:
            raise CommitFailedError(
                f"committed offsets of group {group_id!r} for {wanted} stayed unavailable "
                f"(error {retry_code}) for {timeout:.0f}s")
        if retry_code == _UNSTABLE_OFFSET_COMMIT:
            log.info("waiting for a pending transaction to settle offsets of %s", wanted)
        await asyncio.sleep(0.1)


def _parse_offsets(response: Any) -> tuple[dict[TopicPartition, int], int | None]:
    if response.error_code in _COORDINATOR_MOVED | {_UNSTABLE_OFFSET_COMMIT}:
        return {}, int(response.error_code)
    if response.error_code != 0:
        raise TransportError(f"OffsetFetch failed with error code {response.error_code}")
    offsets: dict[TopicPartition, int] = {}
    for topic, partitions, _tags in response.topics:
        for partition, offset, _epoch, _meta, code, _ptags in partitions:
            if code in _COORDINATOR_MOVED | {_UNSTABLE_OFFSET_COMMIT}:
                return {}, int(code)
            if code != 0:
                raise TransportError(
                    f"OffsetFetch for {topic}[{partition}] failed with error code {code}")
            offsets[TopicPartition(topic, partition)] = int(offset)
    return offsets, None
