"""The tight ceiling: aiokafka consume -> transform -> produce in client-side batches, no
transactions.

What the naive loop (raw_app.py) pays per record — an awaited ``send()``, a future and a
partitioner call in aiokafka's accumulator — is paid here per batch:

1. ``getmany()`` takes up to MAX_RECORDS records from the fetcher's buffer;
2. each output is appended to the open ``BatchBuilder`` of its output partition (Kafka's
   default partitioner, murmur2 of the key, cached per key), which goes to the producer
   with ``send_batch()`` when full and at the end of the fetch — no await per record;
3. the fetch's batch futures and next offsets go to a committer task, which waits for the
   futures and commits the offsets while the next fetch is processed (when it falls behind,
   several fetches share one commit).

At-least-once, like the raw loop; BENCH_INTERVAL is not used (offsets are committed per
fetch). JSON through orjson, as eoflow does; counts in a dict (no store, no changelog).

    python -m bench.apps.raw_batched_app
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from bench.apps import _common as c

MAX_RECORDS = 20_000
BATCH_BYTES = 512 * 1024  # under the broker's default max.message.bytes (1 MiB)
_Pending = tuple[list["asyncio.Future[Any]"], dict[TopicPartition, int]]


class Pipeline:
    """Transforms one fetch into per-partition batches handed to the producer."""

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.producer = producer
        self.partitions = partitions
        self.counts: dict[bytes, int] = {}
        self._partition_of: dict[bytes, int] = {}
        self._passthrough = c.WORKLOAD == "passthrough"

    def partition(self, key: bytes) -> int:
        p = self._partition_of.get(key)
        if p is None:
            p = self._partition_of[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return p

    async def process(self, fetched: dict[TopicPartition, list[Any]]) -> list[asyncio.Future[Any]]:
        producer, counts = self.producer, self.counts
        open_batches: dict[int, Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for msgs in fetched.values():
            for m in msgs:
                v = orjson.loads(m.value)
                if self._passthrough:
                    out = c.passthrough(v)
                else:
                    n = counts[m.key] = counts.get(m.key, 0) + 1
                    out = c.counted(v, n)
                value = orjson.dumps(out)
                p = self.partition(m.key)
                batch = open_batches.get(p)
                if batch is None:
                    batch = open_batches[p] = producer.create_batch()
                if batch.append(key=m.key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, c.OUT_TOPIC, partition=p))
                    batch = open_batches[p] = producer.create_batch()
                    batch.append(key=m.key, value=value, timestamp=None)
        for p, batch in open_batches.items():
            futures.append(await producer.send_batch(batch, c.OUT_TOPIC, partition=p))
        return futures


async def commit_loop(consumer: AIOKafkaConsumer, pending: asyncio.Queue[_Pending | None]) -> None:
    """Commit each fetch's offsets once its batches are acknowledged; None ends the loop."""
    done = False
    while not done:
        items = [await pending.get()]
        while not pending.empty():
            items.append(pending.get_nowait())
        done = None in items
        futures = [f for item in items if item is not None for f in item[0]]
        offsets: dict[TopicPartition, int] = {}
        for item in items:
            if item is not None:
                offsets.update(item[1])
        if futures:
            await asyncio.gather(*futures)
        if offsets:
            await consumer.commit(offsets)


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        c.IN_TOPIC, bootstrap_servers=c.BOOTSTRAP, group_id=c.APP_ID,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
        max_partition_fetch_bytes=2 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=c.BOOTSTRAP, acks="all", linger_ms=0,
                                max_batch_size=BATCH_BYTES)
    await producer.start()
    await consumer.start()
    try:
        pipeline = Pipeline(producer, len(await producer.partitions_for(c.OUT_TOPIC)))
        pending: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=4)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(commit_loop(consumer, pending))
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
                if not fetched:
                    continue
                futures = await pipeline.process(fetched)
                offsets = {tp: msgs[-1].offset + 1 for tp, msgs in fetched.items() if msgs}
                await pending.put((futures, offsets))
            await pending.put(None)  # the last commit, then the committer returns
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
