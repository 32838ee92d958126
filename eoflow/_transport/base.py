"""The seam between the runtime and Kafka: types and protocols, no client library.

``eoflow._runtime`` is typed against :class:`Producer`, :class:`GroupConsumer` and the
records below; ``eoflow._transport.kafka`` implements them with aiokafka and
``eoflow._transport.memory`` in memory (for tests without a broker). Nothing here
imports aiokafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = [
    "Batch",
    "ConsumedRecord",
    "GroupConsumer",
    "GroupMetadata",
    "Producer",
    "RebalanceListener",
    "SendFuture",
    "TopicPartition",
]


class TopicPartition(NamedTuple):
    """A topic partition (equal to, and hashing like, aiokafka's namedtuple)."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


#: Resolves when the broker acknowledged a record or batch; its result has ``.offset``
#: (of the first record of the batch).
SendFuture = asyncio.Future[Any]


class ConsumedRecord(Protocol):
    """What the runtime reads of a fetched record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class GroupMetadata:
    """The consumer's place in the group, taken when partitions are assigned.

    Sent with every transactional offset commit so the coordinator refuses the commit of
    a member that is no longer part of the current generation.
    """

    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None

    def is_valid(self) -> bool:
        """A generation of -1 or an empty member id would silently disable fencing."""
        return self.generation_id >= 0 and bool(self.member_id)


class Batch(Protocol):
    """An open record batch for one partition."""

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None,
               headers: list[tuple[str, bytes]]) -> object | None:
        """Add a record; None when the batch is full."""
        ...

    def size(self) -> int: ...

    def record_count(self) -> int: ...

    def close(self) -> None:
        """No more appends: the batch is ready to be sent."""
        ...


class Producer(Protocol):
    """One producer per worker; transactional in exactly-once mode.

    Every method raises :mod:`eoflow.errors` types only.
    """

    transactional_id: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None:
        """Abort whatever is open by replacing the producer (bumps the epoch)."""
        ...

    async def begin(self) -> None: ...

    def expect(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions the open transaction will write: added to it now, ahead of their
        records, so the commit does not wait for that round trip. A hint only: a record
        adds its partition all the same; outside a transaction it does nothing."""
        ...

    def create_batch(self) -> Batch: ...

    async def submit_batch(self, batch: Batch, topic: str,
                           partition: int) -> tuple[SendFuture, int]: ...

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None,
                   partition: int | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None,
                   timestamp_ms: int | None = None) -> SendFuture: ...

    async def send_batches(self, topic: str, partition: int,
                           records: Iterable[tuple[bytes, bytes | None]],
                           max_bytes: int) -> list[tuple[SendFuture, int]]: ...

    async def send_offsets(self, offsets: Mapping[TopicPartition, int],
                           group: GroupMetadata) -> None: ...

    async def commit(self) -> None: ...


class RebalanceListener(Protocol):
    """Called around every rebalance, from the consumer's group task."""

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...


class GroupConsumer(Protocol):
    """The worker's consumer: group member, ``read_committed``, no auto commit.

    Every method raises :mod:`eoflow.errors` types only.
    """

    def subscribe(self, topics: Iterable[str], listener: RebalanceListener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def group_metadata(self) -> GroupMetadata:
        """Generation and member id as of now (take it at assignment)."""
        ...

    def request_rejoin(self) -> None:
        """Rejoin the group (a new generation and assignment) when one could not complete."""
        ...

    async def fetch(self, timeout: float,
                    max_records: int) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]: ...

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Move positions of assigned partitions; -1 (nothing committed) means earliest."""
        ...

    async def committed_offsets(self, partitions: Iterable[TopicPartition],
                                *, timeout: float) -> dict[TopicPartition, int]:
        """Stable committed offsets (waits while a transaction holds them); -1 if none."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit offsets to the group outside any transaction (at-least-once)."""
        ...

    def advertise(self, url: str) -> None:
        """Publish this worker's web address to the group (before :meth:`start`)."""
        ...

    def peers(self) -> dict[str, frozenset[TopicPartition]]:
        """Web address -> partitions of every member that published one, as of the last
        assignment."""
        ...

    def progress(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """``(position, end offset)`` per assigned partition as of the last fetch (no
        request; the end is the last stable offset); None where not known yet."""
        ...


#: Builds a producer for a transactional id (the worker's only producer).
ProducerFactory = Callable[[str], Producer]
#: Awaitable with no result, for recovery steps.
Step = Callable[[], Awaitable[None]]


class Transport(Protocol):
    """Everything the worker needs from Kafka, built from one place (Kafka or memory)."""

    async def check_access(self, who: str) -> None:
        """Raise a named error at start if the cluster refuses this worker's credentials."""

    async def list_topics(self) -> dict[str, int]:
        """Every (non-internal) topic with its partition count."""
        ...

    async def ensure_topics(self, specs: Sequence[Any], replication_factor: int) -> Any:
        """Create missing topics; return ``admin.Topics`` (counts, limits, retention)."""
        ...

    async def delete_records(self, before: Mapping[TopicPartition, int]) -> None:
        """Delete each partition's records before the given offset (consumed ones of
        repartition topics); raise ``TransportError`` if the cluster refuses."""
        ...

    def producer(self, transactional_id: str, *, transactional: bool,
                 transaction_timeout: float, client_id: str) -> Producer: ...

    def group_consumer(self, *, group_id: str, instance_id: str, client_id: str,
                       session_timeout: float, max_poll_interval: float) -> GroupConsumer: ...

    def changelog_reader(self) -> Any:
        """An async context manager giving a ``_state.restore.ChangelogReader``."""
        ...
