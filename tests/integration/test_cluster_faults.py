"""eoflow's Kafka transport on the three-node cluster while one node is dead.

A worker that starts (or restarts after kill -9) while a broker is down must not fail on
the errors the dead node causes: they are retriable, and the other two nodes serve
everything (replication factor 3, min.insync.replicas 2).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from eoflow._transport.admin import TopicSpec, ensure_topics
from tools.kafka.kafkactl import KafkaCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_ensure_topics_while_a_node_is_dead(kafka_cluster: KafkaCluster) -> None:
    """Found by the cluster harness (issue 15): a worker restarted while one node was down
    exited with ``TransportError: cannot create or describe topics ...:
    NodeNotReadyError('Attempt to send a request to node which is not ready (node id 1)')``.
    aiokafka's admin client sends each request to a random known node, and the dead one
    stays in the metadata until the controller fences it (broker.session.timeout.ms)."""
    base = f"cluster-ensure-{uuid.uuid4().hex[:8]}"
    specs = [TopicSpec(f"{base}-{i}", 2) for i in range(3)]
    await ensure_topics(kafka_cluster.bootstrap, specs, 3)
    victim = kafka_cluster.broker(0)  # any node: every admin request picks one at random
    await asyncio.to_thread(victim.kill)
    try:
        # What a restarted worker does: the topics exist, it describes them. Each call
        # makes a few admin requests, each to a random node: before the fix about one
        # in three hit the dead node and the call failed.
        for _ in range(5):
            topics = await ensure_topics(kafka_cluster.bootstrap, specs, 3)
            assert topics.partitions == {s.name: 2 for s in specs}
    finally:
        await asyncio.to_thread(victim.start, 180)
        await asyncio.to_thread(kafka_cluster.wait_in_sync, 180)
