"""Changelog restore against a real broker: aborted transactions, tombstones, markers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eoflow._state.store import (
    MemoryPartitionStore,
    PartitionStore,
    RocksDBPartitionStore,
    StoreIdentity,
    store_path,
)
from eoflow.testing import restore_partition

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPACTED = {"cleanup.policy": "compact"}
IDENTITY = StoreIdentity("app", "counts", 0, 1)

Txn = tuple[list[tuple[bytes, bytes | None]], bool]  # (records, commit?)


@pytest.fixture(params=["rocksdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PartitionStore]:
    s: PartitionStore
    if request.param == "rocksdb":
        s = RocksDBPartitionStore.open(store_path(tmp_path, "counts", 0), IDENTITY)
    else:
        s = MemoryPartitionStore(IDENTITY)
    yield s
    s.close()


@pytest.fixture
def changelog(topic_factory: Callable[..., str]) -> TopicPartition:
    return TopicPartition(topic_factory(1, name="restore-changelog", config=COMPACTED), 0)


async def produce(bootstrap: str, tp: TopicPartition, txns: list[Txn]) -> None:
    """Write each batch in its own transaction, committed or aborted as asked."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"restore-test-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        for records, commit in txns:
            await producer.begin_transaction()
            futures = [
                await producer.send(tp.topic, key=key, value=value, partition=tp.partition)
                for key, value in records
            ]
            for future in futures:
                await future
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def lso(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        end: int = (await consumer.end_offsets([tp]))[tp]
        return end
    finally:
        await consumer.stop()


FIRST: list[Txn] = [
    ([(b"a", b"1"), (b"b", b"1"), (b"c", b"1")], True),
    ([(b"a", b"aborted"), (b"d", b"aborted"), (b"b", None)], False),
    ([(b"b", b"2"), (b"c", None), (b"e", b"1")], True),
]
FIRST_STATE = {b"a": b"1", b"b": b"2", b"e": b"1"}


async def test_restore_skips_aborted_applies_tombstones_and_passes_the_marker(
    kafka_bootstrap: str, changelog: TopicPartition, store: PartitionStore
) -> None:
    await produce(kafka_bootstrap, changelog, FIRST)
    target = await lso(kafka_bootstrap, changelog)

    stats = await restore_partition(kafka_bootstrap, changelog, store, progress_interval=0.1)

    assert dict(store.items()) == FIRST_STATE
    assert stats.end_offset >= target
    assert stats.records == 6  # committed data records only, no aborted ones, no markers
    assert not stats.rebuilt
    # the last applied record sits before the final commit marker
    assert store.changelog_offset is not None
    assert store.changelog_offset == target - 2


async def test_second_restore_applies_only_new_records(
    kafka_bootstrap: str, changelog: TopicPartition, store: PartitionStore
) -> None:
    await produce(kafka_bootstrap, changelog, FIRST)
    await restore_partition(kafka_bootstrap, changelog, store)
    first_offset = store.changelog_offset
    assert first_offset is not None

    await produce(kafka_bootstrap, changelog, [([(b"a", b"3"), (b"e", None)], True)])
    stats = await restore_partition(kafka_bootstrap, changelog, store)

    assert stats.start_offset == first_offset + 1
    assert stats.records == 2
    assert dict(store.items()) == {b"a": b"3", b"b": b"2"}

    again = await restore_partition(kafka_bootstrap, changelog, store)
    assert again.records == 0


async def test_store_past_the_changelog_end_is_rebuilt_from_scratch(
    kafka_bootstrap: str,
    changelog: TopicPartition,
    store: PartitionStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await produce(kafka_bootstrap, changelog, FIRST)
    store.apply({b"ghost": b"from-an-older-topic"}, 1_000)

    with caplog.at_level(logging.WARNING):
        stats = await restore_partition(kafka_bootstrap, changelog, store)

    assert stats.rebuilt
    assert dict(store.items()) == FIRST_STATE
    assert any("stale" in r.message and changelog.topic in r.message for r in caplog.records)


async def test_restore_of_an_empty_changelog_is_immediate(
    kafka_bootstrap: str, changelog: TopicPartition, store: PartitionStore
) -> None:
    stats = await restore_partition(kafka_bootstrap, changelog, store)
    assert stats.records == 0
    assert store.changelog_offset is None


async def test_restore_rate_many_records(
    kafka_bootstrap: str, changelog: TopicPartition, tmp_path: Path
) -> None:
    txns: list[Txn] = [
        ([(f"k{i % 5000}".encode(), b"v" * 100) for i in range(n, n + 10_000)], True)
        for n in range(0, 100_000, 10_000)
    ]
    await produce(kafka_bootstrap, changelog, txns)
    store = RocksDBPartitionStore.open(tmp_path / "big", IDENTITY)
    try:
        stats = await restore_partition(kafka_bootstrap, changelog, store)
        assert stats.records == 100_000
        assert len(store) == 5000
        print(
            f"\nrestored {stats.records} records in {stats.seconds:.2f}s "
            f"= {stats.records_per_second:,.0f} records/s"
        )
    finally:
        store.close()


KILLED_RESTORE = """
import asyncio, sys
from eoflow._state.store import RocksDBPartitionStore, StoreIdentity
from eoflow.testing import restore_partition
store = RocksDBPartitionStore.open(sys.argv[3], StoreIdentity("app", "counts", 0, 1))
asyncio.run(restore_partition(sys.argv[1], (sys.argv[2], 0), store, chunk_size=100))
"""


async def test_kill_9_during_restore_resumes_from_the_applied_prefix(
    kafka_bootstrap: str, changelog: TopicPartition, tmp_path: Path
) -> None:
    txns: list[Txn] = [
        ([(f"k{i}".encode(), f"{n}".encode()) for i in range(500)], True) for n in range(4)
    ]
    await produce(kafka_bootstrap, changelog, txns)
    path = tmp_path / "killed"
    args = [kafka_bootstrap, changelog.topic, str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EOFLOW_FAULT": "during_restore"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_RESTORE, *args, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()

    store = RocksDBPartitionStore.open(path, IDENTITY)
    try:
        partial = store.changelog_offset
        assert partial is not None  # the first chunk survived the kill
        stats = await restore_partition(kafka_bootstrap, changelog, store)
        assert stats.start_offset == partial + 1
        assert dict(store.items()) == {f"k{i}".encode(): b"3" for i in range(500)}
    finally:
        store.close()


async def _open_transaction(bootstrap: str, tp: TopicPartition,
                            records: list[tuple[bytes, bytes]]) -> AIOKafkaProducer:
    """A producer whose transaction holds ``records`` and stays open (the caller ends it)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"dangling-{uuid.uuid4().hex[:8]}")
    await producer.start()
    await producer.begin_transaction()
    for key, value in records:
        await (await producer.send(tp.topic, key=key, value=value, partition=tp.partition))
    return producer


async def _abort_later(producer: AIOKafkaProducer, delay: float) -> None:
    await asyncio.sleep(delay)
    await producer.abort_transaction()
    await producer.stop()


async def test_committed_records_above_an_open_transaction_are_restored_not_wiped(
    kafka_bootstrap: str, changelog: TopicPartition, store: PartitionStore
) -> None:
    """Issue 17.1: a worker killed after flushing its changelog records leaves an open
    transaction (a new instance id cannot abort it); a later owner commits above it. The
    read_committed end (LSO) then stays below committed records until the transaction
    times out. A store that already applied those records must be kept, and a store that
    has not must wait for them, never stop at the LSO."""
    await produce(kafka_bootstrap, changelog, [([(b"a", b"1")], True)])
    dangling = await _open_transaction(kafka_bootstrap, changelog, [(b"a", b"zombie")])
    await produce(kafka_bootstrap, changelog, [([(b"a", b"2"), (b"b", b"2")], True)])
    stuck_lso = await lso(kafka_bootstrap, changelog)

    # The store of the owner that committed a=2, b=2 (applied right after its commit).
    store.apply({b"a": b"2", b"b": b"2"}, stuck_lso + 2)  # offsets: zombie, marker, a, b
    aborter = asyncio.create_task(_abort_later(dangling, 2.0))
    stats = await restore_partition(kafka_bootstrap, changelog, store)
    await aborter
    assert not stats.rebuilt, "a store past the LSO but below the high watermark is not stale"
    assert dict(store.items()) == {b"a": b"2", b"b": b"2"}


async def test_restore_from_scratch_waits_for_records_committed_above_an_open_transaction(
    kafka_bootstrap: str, changelog: TopicPartition, store: PartitionStore
) -> None:
    await produce(kafka_bootstrap, changelog, [([(b"a", b"1")], True)])
    dangling = await _open_transaction(kafka_bootstrap, changelog, [(b"a", b"zombie")])
    await produce(kafka_bootstrap, changelog, [([(b"a", b"2"), (b"b", b"2")], True)])

    aborter = asyncio.create_task(_abort_later(dangling, 2.0))
    stats = await restore_partition(kafka_bootstrap, changelog, store)
    await aborter
    assert dict(store.items()) == {b"a": b"2", b"b": b"2"}
    assert stats.records == 3
