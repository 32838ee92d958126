"""The Kafka transport: the worker's producer, consumer, admin and changelog readers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .admin import Topics, TopicSpec, delete_records, ensure_topics, list_topics
from .base import TopicPartition
from .changelog import KafkaChangelogReader
from .consumer import KafkaGroupConsumer
from .options import check_consumer_options, check_producer_options
from .preflight import check_credentials
from .producer import TransactionalProducer

__all__ = ["KafkaTransport"]


class KafkaTransport:
    """Implements ``eoflow._transport.base.Transport`` against a Kafka cluster.

    ``client_options`` go to every client; ``consumer_options`` to the consumers and
    ``producer_options`` to the producer (checked here, so a bad one fails at start,
    named: :mod:`.options`).
    """

    def __init__(self, bootstrap: str, client_options: dict[str, Any] | None = None, *,
                 consumer_options: Mapping[str, Any] | None = None,
                 producer_options: Mapping[str, Any] | None = None,
                 compression_type: str | None = None,
                 auto_offset_reset: str = "earliest") -> None:
        self.bootstrap = bootstrap
        self._options = dict(client_options or {})
        self._consumer_options = check_consumer_options(consumer_options or {})
        self._producer_options = check_producer_options(producer_options or {})
        self._compression = compression_type
        self._auto_offset_reset = auto_offset_reset

    async def check_access(self, who: str) -> None:
        """Fail at start, named, if the cluster refuses this worker's credentials."""
        if self._options:
            await check_credentials(self.bootstrap, self._options, who)

    async def list_topics(self) -> dict[str, int]:
        return await list_topics(self.bootstrap, client_options=self._options)

    async def ensure_topics(self, specs: Sequence[TopicSpec], replication_factor: int) -> Topics:
        return await ensure_topics(self.bootstrap, list(specs), replication_factor,
                                   client_options=self._options)

    async def delete_records(self, before: Mapping[TopicPartition, int]) -> None:
        await delete_records(self.bootstrap, before, client_options=self._options)

    def producer(self, transactional_id: str, *, transactional: bool,
                 transaction_timeout: float, client_id: str) -> TransactionalProducer:
        return TransactionalProducer(
            self.bootstrap, transactional_id, transactional=transactional,
            transaction_timeout_ms=int(transaction_timeout * 1000), client_id=client_id,
            client_options=self._options, producer_options=self._producer_options,
            compression_type=self._compression)

    def group_consumer(self, *, group_id: str, instance_id: str, client_id: str,
                       session_timeout: float, max_poll_interval: float) -> KafkaGroupConsumer:
        return KafkaGroupConsumer(
            bootstrap=self.bootstrap, group_id=group_id, instance_id=instance_id,
            client_id=client_id, session_timeout=session_timeout,
            max_poll_interval=max_poll_interval, client_options=self._options,
            consumer_options=self._consumer_options,
            auto_offset_reset=self._auto_offset_reset)

    def changelog_reader(self) -> KafkaChangelogReader:
        return KafkaChangelogReader(self.bootstrap, self._options, self._consumer_options)
