"""The transactional producer: one per worker, fenced by a stable transactional id.

Wraps aiokafka's producer at one seam and fixes the two places where its transaction
support is not enough for exactly-once:

* offsets are committed with ``TxnOffsetCommit`` v3, carrying the consumer's generation,
  member id and group instance id, so the group coordinator refuses a zombie's commit;
* aiokafka forgets the partitions of a transaction after an abortable error and would then
  skip ``EndTxn(abort)``, leaving the broker-side transaction open to be committed by the
  next interval. After any error eoflow therefore throws the producer away and starts a new
  one with the same transactional id: ``InitProducerId`` bumps the epoch, which aborts the
  open transaction on the broker. :meth:`TransactionalProducer.reset` does that.

aiokafka exceptions are translated into :mod:`eoflow.errors` (``.errors.translate``).
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kerr
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from eoflow.errors import (
    CommitFailedError,
    InstanceFencedError,
    TransactionAbortedError,
    TransportError,
)

from .base import Batch, GroupMetadata, SendFuture
from .base import TopicPartition as TP
from .errors import translate
from .group import commit_metadata
from .options import refused
from .protocol import txn_offset_commit_request

__all__ = ["TransactionalProducer"]

log = logging.getLogger(__name__)

# Group coordinator answers that mean "this member is not in the current generation".
_STALE_MEMBER_CODES = {22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID",
                       27: "REBALANCE_IN_PROGRESS", 82: "FENCED_INSTANCE_ID"}
_RETRY_CODES = {14, 15, 16, 7}  # load in progress, not available, not coordinator, timeout
FENCED_INSTANCE_ID = 82


class _GroupAwareTxnOffsetCommit(TxnOffsetCommitHandler):
    """aiokafka's handler, sending v3 with the group metadata of this commit."""

    def __init__(self, sender: Any, offsets: Any, group_id: str, group: GroupMetadata) -> None:
        super().__init__(sender, offsets, group_id)
        self._group = group

    def create_request(self) -> Any:
        txn = self._sender._txn_manager
        return txn_offset_commit_request(
            transactional_id=txn.transactional_id,
            producer_id=txn.producer_id,
            producer_epoch=txn.producer_epoch,
            group=self._group,
            offsets={(tp.topic, tp.partition): (om.offset, om.metadata or "")
                     for tp, om in self._offsets.items()},
        )

    def handle_response(self, resp: Any) -> float | None:
        txn = self._sender._txn_manager
        for topic, partitions, _tags in resp.topics:
            for partition, code, _ptags in partitions:
                tp = TopicPartition(topic, partition)
                if code == 0:
                    txn.offset_committed(tp, self._offsets[tp].offset, self._group_id)
                elif code in _RETRY_CODES:
                    self._sender._coordinator_dead(_group_coordination())
                    return float(self._default_backoff)
                elif code in (47, 90):  # INVALID_PRODUCER_EPOCH, PRODUCER_FENCED
                    raise kerr.ProducerFenced()
                elif code in _STALE_MEMBER_CODES:
                    error_cls = InstanceFencedError if code == FENCED_INSTANCE_ID \
                        else CommitFailedError
                    txn.error_transaction(error_cls(
                        f"group {self._group_id!r} refused offsets for {topic}[{partition}]: "
                        f"{_STALE_MEMBER_CODES[code]} (generation {self._group.generation_id}, "
                        f"member {self._group.member_id!r}); this worker is no longer the "
                        "owner of the partition"))
                    return None
                else:
                    txn.error_transaction(TransactionAbortedError(
                        f"TxnOffsetCommit for {topic}[{partition}] failed with error code "
                        f"{code} ({kerr.for_code(code).__name__})"))
                    return None
        return None


def _group_coordination() -> Any:
    from aiokafka.client import CoordinationType

    return CoordinationType.GROUP


class TransactionalProducer:
    """One transactional producer; ``reset`` replaces it after any error.

    Every send of an interval returns a future that the commit awaits and checks
    (aiokafka's ``commit_transaction`` does not check failed batches).
    """

    def __init__(
        self,
        bootstrap: str,
        transactional_id: str,
        *,
        transactional: bool = True,
        transaction_timeout_ms: int,
        client_id: str,
        linger_ms: int = 10,
        max_batch_size: int = 512 * 1024,
        max_request_size: int = 4 * 1024 * 1024,
        client_options: dict[str, Any] | None = None,
        producer_options: dict[str, Any] | None = None,
        compression_type: str | None = None,
    ) -> None:
        self.transactional_id = transactional_id
        self.transactional = transactional
        self._options = dict(producer_options or {})
        tunable: dict[str, Any] = {"linger_ms": linger_ms, "max_batch_size": max_batch_size,
                                   "max_request_size": max_request_size, **self._options}
        #: The largest request the producer sends: no record may be larger.
        self.max_request_size = int(tunable["max_request_size"])
        self._config: dict[str, Any] = dict(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            compression_type=compression_type,
            **tunable,
            **(client_options or {}),
        )
        if transactional:
            self._config.update(transactional_id=transactional_id,
                                transaction_timeout_ms=transaction_timeout_ms)
        else:  # at-least-once: idempotent, no transactions
            self._config.update(enable_idempotence=True)
        self._producer: AIOKafkaProducer | None = None
        self._group: GroupMetadata | None = None
        self.in_transaction = False

    async def start(self) -> None:
        """Start and initialise: InitProducerId fences older producers with this id."""
        try:
            producer = AIOKafkaProducer(**self._config)
        except (ValueError, TypeError, AssertionError, kerr.UnsupportedCodecError) as exc:
            options = {**self._options, "compression_type": self._config["compression_type"]}
            raise refused("producer_options", options, exc) from exc
        self._install_offset_commit_v3(producer)
        try:
            await producer.start()
        except BaseException as exc:
            await _stop_quietly(producer)
            if not isinstance(exc, Exception):  # a cancellation (or a timeout) stays one
                raise
            raise translate(exc, f"starting producer {self.transactional_id!r}") \
                from exc
        self._producer = producer
        self.in_transaction = False

    def _install_offset_commit_v3(self, producer: AIOKafkaProducer) -> None:
        sender = producer._sender
        outer = self

        async def _do_txn_offset_commit(self_: Any, offsets: Any, group_id: str) -> None:
            if not offsets:
                return
            group = outer._group
            if group is None or group.group_id != group_id:
                raise RuntimeError("offsets sent without group metadata")
            node_id = await self_._find_coordinator(_group_coordination(), group_id)
            await _GroupAwareTxnOffsetCommit(self_, offsets, group_id, group).do(node_id)

        sender._do_txn_offset_commit = types.MethodType(_do_txn_offset_commit, sender)

    @property
    def _p(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise TransportError("the producer is not started")
        return self._producer

    async def begin(self) -> None:
        """Begin a transaction (the coordinator hears of it with the first partition)."""
        if not self.transactional:
            return
        try:
            await self._p.begin_transaction()
        except Exception as exc:
            raise translate(exc, "begin transaction") from exc
        self.in_transaction = True

    def expect(self, partitions: Iterable[TP]) -> None:
        """AddPartitionsToTxn for ``partitions`` now: aiokafka's sender sends it on its
        next turn, so the commit finds them added (see :class:`Producer`)."""
        if not self.in_transaction or self._producer is None:
            return
        manager = self._producer._txn_manager
        if manager is None or not manager.is_in_transaction():  # EndTxn under way
            return
        for topic, partition in partitions:
            manager.maybe_add_partition_to_txn(TopicPartition(topic, partition))

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> SendFuture:
        """Append a record to the current transaction; the future resolves on delivery."""
        try:
            fut: SendFuture = await self._p.send(
                topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms,
                headers=list(headers) if headers else None)
        except Exception as exc:
            raise translate(
                self._cause(exc), f"send to {topic}[{partition if partition is not None else '?'}]"
            ) from exc
        return fut

    async def send_batches(
        self, topic: str, partition: int, records: Iterable[tuple[bytes, bytes | None]],
        max_bytes: int,
    ) -> list[tuple[SendFuture, int]]:
        """Send many records to one partition as whole batches (no per-record future).

        No batch grows past ``max_bytes`` (the topic's ``max.message.bytes``). Returns
        ``(future, record count)`` per batch; a future resolves to the metadata of the
        batch's first record, so the last offset is ``offset + count - 1``.
        """
        sent: list[tuple[SendFuture, int]] = []
        batch = self._p.create_batch()
        for key, value in records:
            full = batch.record_count() and \
                batch.size() + len(key) + len(value or b"") + 152 > max_bytes
            if full or batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(await self.submit_batch(batch, topic, partition))
                batch = self._p.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        if batch.record_count():
            sent.append(await self.submit_batch(batch, topic, partition))
        return sent

    def create_batch(self) -> Batch:
        """An empty aiokafka BatchBuilder, to fill with ``append`` and :meth:`submit_batch`."""
        batch: Batch = self._p.create_batch()
        return batch

    async def submit_batch(self, batch: Batch, topic: str,
                           partition: int) -> tuple[SendFuture, int]:
        """Close ``batch`` and queue it for ``topic[partition]`` in the transaction."""
        count = batch.record_count()
        try:
            batch.close()
            fut: SendFuture = await self._p.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            raise translate(self._cause(exc), f"send batch to {topic}[{partition}]") from exc
        return fut, count

    def _cause(self, exc: Exception) -> BaseException:
        """Why aiokafka says "not in transaction": the error that ended the transaction
        (a missing ACL, a fencing), which the caller must see, not the symptom."""
        if isinstance(exc, kerr.IllegalOperation):
            waiter = getattr(getattr(self._p, "_txn_manager", None), "_transaction_waiter",
                             None)
            if waiter is not None and waiter.done() and not waiter.cancelled() and \
                    waiter.exception() is not None:
                return waiter.exception()  # type: ignore[no-any-return]
        return exc

    async def send_offsets(self, offsets: Mapping[TP, int], group: GroupMetadata) -> None:
        """Add consumed offsets to the transaction with the group's generation (KIP-447)."""
        if not group.is_valid():
            raise CommitFailedError(
                f"refusing to commit offsets with generation {group.generation_id} and member "
                f"{group.member_id!r}: that would disable zombie fencing")
        self._group = group
        try:
            meta = commit_metadata(group.group_instance_id)
            await self._p.send_offsets_to_transaction(
                {TopicPartition(*tp): OffsetAndMetadata(off, meta) for tp, off in offsets.items()},
                group.group_id)
        except Exception as exc:
            raise translate(exc, "send offsets to transaction") from exc

    async def commit(self) -> None:
        """EndTxn(commit). On error the outcome is unknown: call :meth:`reset`."""
        try:
            await self._p.commit_transaction()
        except Exception as exc:
            raise translate(exc, "commit transaction") from exc
        finally:
            self.in_transaction = False

    async def reset(self) -> None:
        """Abort whatever is open by replacing the producer (epoch bump aborts on the broker)."""
        await self.close()
        await self.start()

    async def close(self) -> None:
        """Stop the producer; idempotent. An open transaction is aborted by the broker."""
        producer, self._producer = self._producer, None
        self.in_transaction = False
        if producer is not None:
            await _stop_quietly(producer)


async def _stop_quietly(producer: AIOKafkaProducer, timeout: float = 10.0) -> None:
    # After an abortable error aiokafka leaves the error on an internal future nobody
    # reads; mark it read so asyncio does not log it as "never retrieved".
    waiter = getattr(producer._txn_manager, "_transaction_waiter", None)
    if waiter is not None and waiter.done() and not waiter.cancelled():
        waiter.exception()
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except Exception as exc:  # stopping a broken producer must not hide the first error
        log.debug("ignoring error while stopping producer: %r", exc)
