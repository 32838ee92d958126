"""eoflow on the three-node cluster while nodes are dead.

A worker that starts (or restarts after kill -9) while a broker is down must not fail on
the errors the dead node causes: they are retriable, and the other two nodes serve
everything (replication factor 3, min.insync.replicas 2). With two nodes down nothing can
commit, but that too only lasts until they are back.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from eoflow._transport.admin import TopicSpec, ensure_topics
from tests.harness.cluster import ClusterFaults, transactional_id
from tests.harness.run import Run, RunConfig
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


async def test_a_worker_outlives_a_long_loss_of_two_of_three_nodes(
    kafka_cluster: KafkaCluster, tmp_path: Path,
) -> None:
    """Two of three nodes down for 75 s: no partition has min.insync.replicas, and no
    controller quorum; nothing can commit. The worker must abort and keep retrying (and
    say so), not exit, and then go on exactly once. Short timeouts make the give-up
    come early: transaction_timeout 4 s, request_timeout 10 s."""
    cfg = RunConfig(kafka_cluster.bootstrap, tmp_path, f"long-outage-{uuid.uuid4().hex[:6]}",
                    records=1500, rate=50.0, transaction_timeout=4.0, cluster=kafka_cluster,
                    extra_env={"EOFLOW_PRODUCER_OPTIONS": '{"request_timeout_ms": 10000}'})
    async with Run(cfg) as run:
        faults = ClusterFaults(run)
        worker = run.workers.start("w1")
        run.driver.start()
        try:
            await run.watcher.wait_echoed(200, 120)
            first = await faults.coordinator_of("transaction", transactional_id(cfg.name, "w1"))
            for node in (first, first % 3 + 1):
                await faults.kill(node)
            await asyncio.sleep(75)
        finally:
            await faults.heal()
        assert worker.alive, f"the worker exited {worker.returncode}:\n{worker.tail(40)}"
        result = await run.finish()
    assert result.ok, result.report()
