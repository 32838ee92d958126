"""Helpers for testing eoflow apps against a real broker.

::

    async with eoflow.testing.running(app) as worker:
        await eoflow.testing.produce(bootstrap, "words", [(b"k", b'"hello"')])
        records = await eoflow.testing.wait_for_records(bootstrap, "out", 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from eoflow._app import App
from eoflow._runtime.worker import Worker
from eoflow._settings import Settings
from eoflow._state import PartitionStore, RestoreStats, restore

__all__ = ["Record", "produce", "read_committed", "restore_partition", "running",
           "wait_for_records"]


@dataclass(frozen=True)
class Record:
    """A record as read back: coordinates, key, value and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@contextlib.asynccontextmanager
async def running(app: App, settings: Settings | None = None,
                  *, ready_timeout: float = 30.0,
                  transport: Any = None) -> AsyncIterator[Worker]:
    """Run a worker for ``app`` in this event loop; stop it (final commit) on exit.

    Waits until the worker's first assignment is restored and processing before yielding.
    Re-raises the worker's error, if it failed. ``transport`` replaces Kafka (for example
    an in-memory one).
    """
    worker = Worker(app, settings, transport=transport)
    task = asyncio.create_task(worker.run(), name=f"worker-{app.id}")
    try:
        deadline = time.monotonic() + ready_timeout
        while worker.rebalance is None or worker.rebalance.ready == 0:
            if task.done():
                task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker of {app.id!r} got no assignment in {ready_timeout}s")
            await asyncio.sleep(0.05)
        yield worker
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 60)
        except TimeoutError:
            task.cancel()
            raise


async def produce(bootstrap: str, topic: str,
                  records: Iterable[tuple[bytes | None, bytes | None]],
                  *, partition: int | None = None) -> None:
    """Produce ``(key, value)`` pairs with an idempotent producer and wait for all acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, partition=partition)
                   for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_committed(bootstrap: str, topic: str, *,
                         isolation_level: str = "read_committed",
                         timeout: float = 30.0) -> list[Record]:
    """Every record of ``topic`` up to its current end (the LSO under read_committed).

    Raises :class:`TimeoutError` if the positions do not reach the end offsets in time
    (an unfinished transaction holds the LSO back).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, isolation_level=isolation_level)
    await consumer.start()
    try:
        partitions = await consumer._client._wait_on_metadata(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic!r} did not reach its end offsets {ends}")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(Record(r.topic, r.partition, r.offset, r.key, r.value,
                                  tuple(r.headers or ())) for r in records)
        return out
    finally:
        await consumer.stop()


async def wait_for_records(bootstrap: str, topic: str, count: int, *,
                           timeout: float = 60.0,
                           isolation_level: str = "read_committed") -> list[Record]:
    """Poll ``topic`` until at least ``count`` records are visible; return them all."""
    deadline = time.monotonic() + timeout
    while True:
        records = await read_committed(bootstrap, topic, isolation_level=isolation_level)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.2)


async def restore_partition(bootstrap: str, changelog: tuple[str, int], store: PartitionStore,
                            **options: Any) -> RestoreStats:
    """Restore ``store`` from changelog partition ``(topic, partition)`` as a worker does
    (``read_committed``, up to the high watermark); ``options`` go to the restore."""
    from eoflow._transport.changelog import KafkaChangelogReader

    topic, partition = changelog
    async with KafkaChangelogReader(bootstrap) as reader:
        return await restore(reader, topic, partition, store, **options)
