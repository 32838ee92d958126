"""Testing eoflow apps: without a broker (:class:`TestDriver`), or against a real one.

::

    async with eoflow.testing.TestDriver(app) as driver:     # no broker, no Java
        await driver.send("words", key="k", value="hello")
        await driver.settle()
        assert driver.table("counts") == {"hello": 1}

    async with eoflow.testing.running(app) as worker:        # a real broker
        await eoflow.testing.produce(bootstrap, "words", [(b"k", b'"hello"')])
        records = await eoflow.testing.wait_for_records(bootstrap, "out", 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from eoflow._app import App
from eoflow._driver import AgentTestContext, Crashed, ManualClock, Output, TestDriver
from eoflow._runtime.worker import Worker
from eoflow._settings import Settings
from eoflow._state import PartitionStore, RestoreStats, restore
from eoflow._transport.kit import (
    Record,
    TopicRead,
    create_topics,
    delete_topics,
    open_transactions,
    produce,
    read_changelog,
    read_committed,
    read_topic,
    send_one,
    tail,
)

__all__ = [
    "AgentTestContext", "Crashed", "ManualClock", "Output", "Record", "TestDriver",
    "TopicRead", "create_topics", "delete_topics", "open_transactions", "produce",
    "read_changelog", "read_committed", "read_topic", "restore_partition", "running",
    "send_one", "tail", "wait_for_records",
]


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


async def wait_for_records(bootstrap: str, topic: str, count: int, *,
                           timeout: float = 60.0,
                           client_options: Mapping[str, Any] | None = None) -> list[Record]:
    """Poll ``topic`` until at least ``count`` committed records are visible; return them."""
    deadline = time.monotonic() + timeout
    while True:
        records = await read_committed(bootstrap, topic, client_options=client_options)
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
