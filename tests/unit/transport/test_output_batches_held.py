"""An interval's output batches wait for its transaction.

The interval after a commit takes events while that commit's EndTxn is still in flight:
its records must not reach the producer before its own transaction begins (the open one
would take them), and once it begins they must go out in the order they were sent, even
while the agent keeps sending during the hand-over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eoflow._transport.batching import OutputBatches, Partitioner
from eoflow._transport.memory.clients import MemoryBatch


class _Producer:
    """Records what it was handed, after a few turns of the loop per batch."""

    def __init__(self) -> None:
        self.submitted: list[tuple[int, list[bytes]]] = []

    def create_batch(self) -> MemoryBatch:
        return MemoryBatch(200)  # a few records per batch

    async def submit_batch(self, batch: Any, topic: str, partition: int) -> tuple[Any, int]:
        for _ in range(3):
            await asyncio.sleep(0)
        self.submitted.append((partition, [r[1] for r in batch.records]))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future, batch.record_count()


def _values(producer: _Producer, partition: int) -> list[bytes]:
    return [v for p, values in producer.submitted if p == partition for v in values]


async def test_held_batches_reach_the_producer_only_after_release() -> None:
    producer = _Producer()
    batches = OutputBatches(producer, Partitioner({"out": 2}), {})  # type: ignore[arg-type]
    assert batches.held
    for i in range(40):  # several full batches per partition
        await batches.append("out", b"k", b"v%02d" % i, i % 2, None, ("e", i))
    await batches.hand_over_open()  # the linger tick: held, so nothing moves
    assert producer.submitted == []
    assert batches.open_count > 2  # full batches queued, plus the open ones
    await batches.flush()
    assert batches.open_count == 0
    for p in (0, 1):
        assert _values(producer, p) == [b"v%02d" % i for i in range(p, 40, 2)]


async def test_records_sent_during_the_release_keep_their_order() -> None:
    producer = _Producer()
    batches = OutputBatches(producer, Partitioner({"out": 1}), {})  # type: ignore[arg-type]
    for i in range(30):
        await batches.append("out", b"k", b"v%03d" % i, 0, None, ("e", i))
    stop = asyncio.Event()

    async def agent() -> None:  # keeps sending while the queued batches go over
        i = 30
        while not stop.is_set():
            await batches.append("out", b"k", b"v%03d" % i, 0, None, ("e", i))
            i += 1
            await asyncio.sleep(0)

    sending = asyncio.create_task(agent())
    try:
        await batches.release()
        assert not batches.held
    finally:
        stop.set()
        await sending
    await batches.flush()
    sent = _values(producer, 0)
    assert len(sent) > 30
    assert sent == sorted(sent)  # no batch that filled during the release overtook one
