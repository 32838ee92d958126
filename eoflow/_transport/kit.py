"""Kafka helpers for tools and tests: create and delete topics, produce, read to the end.

One kit, used by ``eoflow.testing`` (which re-exports it), ``eoflow send`` / ``eoflow
table``, the test fixtures, the exactly-once harness and the demo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from eoflow._security import client_kwargs, credentials_from_env
from eoflow.errors import TransportError

__all__ = ["Record", "TopicRead", "create_topics", "delete_topics", "fold_changelog",
           "group_offsets", "open_transactions", "produce", "read_changelog",
           "read_committed", "read_topic", "send_one", "tail"]


@dataclass(frozen=True)
class Record:
    """A record as read back: coordinates, key, value, headers and timestamp."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


@dataclass
class TopicRead:
    """A topic read from the beginning: records per partition, in offset order."""

    topic: str
    records: dict[int, list[Record]] = field(default_factory=dict)
    #: Partitions whose read_committed position never reached the high watermark (an
    #: open or hanging transaction): ``partition -> (position, high watermark)``.
    unfinished: dict[int, tuple[int, int]] = field(default_factory=dict)

    def all(self) -> list[Record]:
        return [r for p in sorted(self.records) for r in self.records[p]]


async def create_topics(bootstrap: str, topics: Mapping[str, int],
                        config: Mapping[str, Mapping[str, str]] | None = None, *,
                        replication_factor: int = 1, timeout: float = 30.0,
                        client_options: Mapping[str, Any] | None = None) -> None:
    """Create ``{name: partitions}`` (existing topics are fine); wait for their leaders."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_options(client_options))
    await admin.start()
    try:
        new = [NewTopic(name, num_partitions=n, replication_factor=replication_factor,
                        topic_configs=dict((config or {}).get(name) or {}))
               for name, n in topics.items()]
        resp = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
        for topic, code, *rest in resp.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise TransportError(f"create topic {topic!r} failed: error {code} {rest}")
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics(list(topics))
            if all(t["error_code"] == 0 and t["partitions"]
                   and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
                return
            if time.monotonic() > deadline:
                raise TransportError(f"topics {list(topics)} have no leaders after {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str], *,
                        client_options: Mapping[str, Any] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_options(client_options))
    await admin.start()
    try:
        await admin.delete_topics(list(names), timeout_ms=10000)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str,
                  records: Iterable[tuple[bytes | None, bytes | None]],
                  *, partition: int | None = None,
                  headers: list[tuple[str, bytes]] | None = None,
                  timestamps_ms: Sequence[int] | None = None,
                  client_options: Mapping[str, Any] | None = None) -> None:
    """Produce ``(key, value)`` pairs with an idempotent producer and wait for all acks
    (with ``timestamps_ms``, the i-th record gets the i-th timestamp)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, max_request_size=8 * 1024 * 1024,
                                **_options(client_options))
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, partition=partition,
                                       headers=headers,
                                       timestamp_ms=None if timestamps_ms is None
                                       else timestamps_ms[i])
                   for i, (k, v) in enumerate(records)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def send_one(bootstrap: str, topic: str, key: bytes | None, value: bytes | None, *,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None,
                   client_options: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """Produce one record (idempotent, acks=all); returns ``(partition, offset)``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                **_options(client_options))
    try:
        await producer.start()
        meta = await producer.send_and_wait(topic, value=value, key=key, partition=partition,
                                            headers=headers)
    except Exception as exc:
        raise TransportError(f"sending to {topic!r}: {exc!r}") from exc
    finally:
        await producer.stop()
    return int(meta.partition), int(meta.offset)


async def read_topic(bootstrap: str, topic: str, *, committed: bool = True,
                     timeout: float = 60.0, to_stable: bool = False,
                     client_options: Mapping[str, Any] | None = None) -> TopicRead:
    """Read ``topic`` from the beginning to its high watermark.

    With ``committed`` the reader is ``read_committed``: its position can reach the high
    watermark only when every transaction on the partition has finished (committed or
    aborted); partitions that do not get there within ``timeout`` are reported in
    :attr:`TopicRead.unfinished`. With ``to_stable`` it reads only to the current last
    stable offset: what a ``read_committed`` reader sees now, open transactions or not.
    Raises :class:`TransportError` for a missing topic.
    """
    isolation = "read_committed" if committed else "read_uncommitted"
    options = _options(client_options)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024, **options)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                            isolation_level="read_uncommitted", **options)
    await consumer.start()
    await ends.start()
    try:
        tps = await _partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        highs = await (consumer if to_stable else ends).end_offsets(tps)
        result = TopicRead(topic, {tp.partition: [] for tp in tps})
        deadline = time.monotonic() + timeout
        left = set(tps)
        while left and time.monotonic() < deadline:
            batch = await consumer.getmany(*left, timeout_ms=200, max_records=10000)
            for tp, records in batch.items():
                result.records[tp.partition].extend(
                    Record(r.topic, r.partition, r.offset, r.key, r.value,
                           tuple(r.headers or ()), r.timestamp) for r in records)
            for tp in list(left):
                if await consumer.position(tp) >= highs[tp]:
                    left.discard(tp)
        for tp in left:
            result.unfinished[tp.partition] = (await consumer.position(tp), highs[tp])
        return result
    finally:
        await consumer.stop()
        await ends.stop()


async def read_committed(bootstrap: str, topic: str, *, timeout: float = 30.0,
                         client_options: Mapping[str, Any] | None = None) -> list[Record]:
    """Every record of ``topic`` a ``read_committed`` reader sees now (up to the last stable
    offset), partition by partition in offset order.

    Raises :class:`TimeoutError` if the positions do not reach those ends in time.
    """
    read = await read_topic(bootstrap, topic, timeout=timeout, to_stable=True,
                            client_options=client_options)
    if read.unfinished:
        raise TimeoutError(f"reading {topic!r} did not reach its end offsets "
                           f"{read.unfinished}")
    return read.all()


async def open_transactions(bootstrap: str, topics: Iterable[str], *,
                            client_options: Mapping[str, Any] | None = None
                            ) -> list[tuple[str, int]]:
    """The partitions of ``topics`` with a transaction that was open when this was called
    and still is (or its markers are not written yet): a ``read_committed`` reader sees
    nothing past its first record. Topics that do not exist are skipped."""
    options = _options(client_options)
    stable = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                              isolation_level="read_committed", **options)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                            isolation_level="read_uncommitted", **options)
    await stable.start()
    await ends.start()
    try:
        existing = await stable.topics()
        tps = [tp for topic in sorted(set(topics) & existing)
               for tp in await _partitions_of(stable, topic)]
        if not tps:
            return []
        # The high watermarks first: a transaction begun after them starts at or above
        # them, so only one already open then (and still open) keeps a LSO below.
        high = await ends.end_offsets(tps)
        lso = await stable.end_offsets(tps)
        return [(tp.topic, tp.partition) for tp in tps if lso[tp] < high[tp]]
    finally:
        await stable.stop()
        await ends.stop()


async def read_changelog(bootstrap: str, topic: str, *, timeout: float = 30.0,
                         client_options: Mapping[str, Any] | None = None
                         ) -> dict[bytes, bytes]:
    """Fold a changelog topic: its committed records, tombstones deleting."""
    read = await read_topic(bootstrap, topic, timeout=timeout, to_stable=True,
                            client_options=client_options)
    return fold_changelog(read.all())


def fold_changelog(records: Iterable[Record]) -> dict[bytes, bytes]:
    """The last value of each key of ``records`` (in order), tombstones deleting."""
    contents: dict[bytes, bytes] = {}
    for record in records:
        if record.key is None:
            continue
        if record.value is None:
            contents.pop(record.key, None)
        else:
            contents[record.key] = record.value
    return contents


async def tail(bootstrap: str, topics: Iterable[str], *, committed: bool = True,
               client_options: Mapping[str, Any] | None = None) -> AsyncIterator[Record]:
    """Every record of ``topics`` from the beginning, then each new one as it arrives."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed" if committed else "read_uncommitted",
        max_partition_fetch_bytes=8 * 1024 * 1024, **_options(client_options))
    await consumer.start()
    try:
        tps = [tp for name in topics for tp in await _partitions_of(consumer, name)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for records in batch.values():
                for r in records:
                    yield Record(r.topic, r.partition, r.offset, r.key, r.value,
                                 tuple(r.headers or ()), r.timestamp)
    finally:
        await consumer.stop()


async def group_offsets(bootstrap: str, group: str, *,
                        client_options: Mapping[str, Any] | None = None
                        ) -> dict[tuple[str, int], int]:
    """The offsets ``group`` has committed: ``(topic, partition) -> offset``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_options(client_options))
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    except Exception as exc:
        raise TransportError(f"reading the offsets of group {group!r}: {exc!r}") from exc
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): int(om.offset) for tp, om in found.items()}


def _options(client_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """What every client gets: ``client_options``, else the credentials of the
    ``EOFLOW_SASL_*`` / ``EOFLOW_SSL_*`` environment (plaintext when none)."""
    if client_options is not None:
        return dict(client_options)
    return client_kwargs(credentials_from_env())


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str,
                         timeout: float = 20.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise TransportError(f"topic {topic!r} does not exist")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
