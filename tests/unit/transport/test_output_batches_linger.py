"""The linger tick hands over the batches open when it runs, and returns.

Against a real broker aiokafka's ``add_batch`` waits until the partition's previous batch
is on the wire. While it waits, an agent under load keeps opening batches; a hand-over that
loops "until nothing is open" then never returns, and the commit that waits behind it
comes late (a 100 ms commit interval lasted about a second under load). These tests play
that with a producer whose hand-over waits, and an agent that never stops sending.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eoflow._transport.batching import OutputBatches, Partitioner
from eoflow._transport.memory.clients import MemoryBatch


class _SlowProducer:
    """Hands a batch over only after a few turns of the loop, like a partition whose
    previous batch is still in flight."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, int, int]] = []

    def create_batch(self) -> MemoryBatch:
        return MemoryBatch()

    async def submit_batch(self, batch: Any, topic: str, partition: int) -> tuple[Any, int]:
        for _ in range(3):
            await asyncio.sleep(0)
        self.submitted.append((topic, partition, batch.record_count()))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future, batch.record_count()


def _batches(producer: _SlowProducer) -> OutputBatches:
    batches = OutputBatches(producer, Partitioner({"out": 4}), {})  # type: ignore[arg-type]
    batches.held = False  # the interval's transaction has begun (nothing was queued)
    return batches


async def test_the_linger_hand_over_returns_while_an_agent_keeps_sending() -> None:
    producer = _SlowProducer()
    batches = _batches(producer)
    for p in range(4):
        assert batches.add("out", b"k", b"v", p, None, ("seed", p))
    stop = asyncio.Event()

    async def agent() -> None:  # sends on every turn of the loop, as a busy agent does
        i = 0
        while not stop.is_set():
            batches.add("out", b"k", b"v%d" % i, i % 4, None, ("agent", i))
            i += 1
            await asyncio.sleep(0)

    sending = asyncio.create_task(agent())
    try:
        async with asyncio.timeout(5):
            await batches.hand_over_open()
    finally:
        stop.set()
        await sending
    # Each partition open at the call went over once; what the agent opened meanwhile
    # waits for the next tick (or the commit's flush).
    assert sorted(p for _, p, _ in producer.submitted) == [0, 1, 2, 3]
    assert batches.open_count > 0


async def test_the_commit_flush_still_hands_over_everything() -> None:
    producer = _SlowProducer()
    batches = _batches(producer)
    for i in range(10):
        assert batches.add("out", b"k", b"v%d" % i, i % 4, None, ("seed", i))
    await batches.hand_over_open()
    assert batches.add("out", b"k", b"late", 2, None, ("late", 0))
    await batches.flush()
    assert batches.open_count == 0
    assert sum(n for _, _, n in producer.submitted) == 11
    assert len(batches.sent) == 5
