"""The group consumer: static membership, read_committed, stable committed offsets.

:meth:`KafkaGroupConsumer.committed_offsets` asks the group coordinator with
``OffsetFetch`` v7 and ``require_stable``: while another member's transaction that holds
offsets for these partitions is still open, the broker answers
``UNSTABLE_OFFSET_COMMIT`` and we wait, instead of starting from an offset that
transaction is about to move (KIP-447). Right after a broker (re)start the coordinator is
briefly unknown, loading or moving (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
COORDINATOR_LOAD_IN_PROGRESS): those are retried with a backoff too, until ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as KafkaTP

from eoflow.errors import CommitFailedError, EoflowError, TransportError

from .base import ConsumedRecord, GroupMetadata, RebalanceListener, TopicPartition
from .errors import RETRIABLE_GROUP_ERRORS, translate
from .group import commit_metadata
from .membership import AdvertisingAssignor, Peers
from .options import refused
from .protocol import offset_fetch_request

__all__ = ["KafkaGroupConsumer"]

log = logging.getLogger(__name__)

_UNSTABLE_OFFSET_COMMIT = 88
_COORDINATOR_MOVED = {14, 15, 16}  # loading, not available, not coordinator
_RETRY_CODES = _COORDINATOR_MOVED | {_UNSTABLE_OFFSET_COMMIT}


class _Listener(ConsumerRebalanceListener):
    """aiokafka's listener interface, handing eoflow's TopicPartition to ours."""

    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: set[KafkaTP]) -> None:
        await self._listener.on_partitions_revoked({TopicPartition(*tp) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[KafkaTP]) -> None:
        await self._listener.on_partitions_assigned({TopicPartition(*tp) for tp in assigned})


class KafkaGroupConsumer:
    """Implements ``eoflow._transport.base.GroupConsumer`` with aiokafka.

    Never commits by itself, reads only committed records. The range assignor gives the
    same partition numbers of equally partitioned topics to the same member, which is
    what co-partitioned tables need.
    """

    def __init__(self, *, bootstrap: str, group_id: str, instance_id: str, client_id: str,
                 session_timeout: float, max_poll_interval: float,
                 client_options: dict[str, Any] | None = None,
                 consumer_options: dict[str, Any] | None = None,
                 auto_offset_reset: str = "earliest") -> None:
        session_timeout_ms = int(session_timeout * 1000)
        self._group_id = group_id
        self._instance_id = instance_id
        self._auto_offset_reset = auto_offset_reset
        self._assignor = AdvertisingAssignor(instance_id)
        #: Defaults the user's ``consumer_options`` may override.
        tunable: dict[str, Any] = {
            "heartbeat_interval_ms": max(100, session_timeout_ms // 5),
            "fetch_max_wait_ms": 100,
            "max_partition_fetch_bytes": 1024 * 1024,
            **(consumer_options or {})}
        try:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group_id,
                group_instance_id=instance_id,
                client_id=client_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset=auto_offset_reset,
                session_timeout_ms=session_timeout_ms,
                max_poll_interval_ms=int(max_poll_interval * 1000),
                partition_assignment_strategy=(self._assignor,),
                **tunable,
                **(client_options or {}),
            )
        except (ValueError, TypeError, AssertionError) as exc:
            raise refused("consumer_options", consumer_options or {}, exc) from exc

    def advertise(self, url: str) -> None:
        """Publish this worker's web address to the group (call before :meth:`start`)."""
        self._assignor.url = url

    def peers(self) -> Peers:
        """Web address -> partitions of every member that published one, as of the last
        assignment (empty before the first, or if the leader publishes none)."""
        return dict(self._assignor.peers)

    def progress(self) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """``(position, last stable offset)`` of each assigned partition, as of the last
        fetch; None where not known yet. Asks the broker nothing."""
        subscription = self._consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None:
            return {}
        found: dict[TopicPartition, tuple[int | None, int | None]] = {}
        for tp in assignment.tps:
            state = assignment.state_value(tp)
            position = state.position if state.has_valid_position else None
            lso = state.lso if state.lso is not None and state.lso >= 0 else state.highwater
            found[TopicPartition(*tp)] = (position, lso)
        return found

    def subscribe(self, topics: Iterable[str], listener: RebalanceListener) -> None:
        self._consumer.subscribe(topics=sorted(set(topics)), listener=_Listener(listener))

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except Exception as exc:
            raise translate(exc, f"starting the consumer of group {self._group_id!r}") from exc

    async def stop(self) -> None:
        await self._consumer.stop()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(*tp) for tp in self._consumer.assignment()}

    def group_metadata(self) -> GroupMetadata:
        coordinator = self._consumer._coordinator
        return GroupMetadata(group_id=self._group_id,
                             generation_id=int(coordinator.generation),
                             member_id=str(coordinator.member_id),
                             group_instance_id=self._instance_id)

    def request_rejoin(self) -> None:
        """Ask the coordinator task to rejoin the group (a new generation, a new assignment)."""
        self._consumer._coordinator.request_rejoin()

    async def fetch(self, timeout: float,
                    max_records: int) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]:
        try:
            batch = await self._consumer.getmany(timeout_ms=int(timeout * 1000),
                                                 max_records=max_records)
        except Exception as exc:
            raise translate(exc, "fetching records") from exc
        return {TopicPartition(*tp): records for tp, records in batch.items()}

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Seek; -1 (nothing committed) goes where ``auto_offset_reset`` says."""
        assigned = self._consumer.assignment()
        unset = [KafkaTP(*tp) for tp, off in offsets.items() if off < 0 and tp in assigned]
        for tp, offset in offsets.items():
            if offset >= 0 and tp in assigned:
                self._consumer.seek(KafkaTP(*tp), offset)
        if unset:
            latest = self._auto_offset_reset == "latest"
            try:
                if latest:
                    await self._consumer.seek_to_end(*unset)
                else:
                    await self._consumer.seek_to_beginning(*unset)
            except Exception as exc:
                where = "end" if latest else "beginning"
                raise translate(exc, f"seeking {unset} to the {where}") from exc

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            meta = commit_metadata(self._instance_id)
            await self._consumer.commit({KafkaTP(*tp): OffsetAndMetadata(off, meta)
                                         for tp, off in offsets.items()})
        except Exception as exc:
            raise CommitFailedError(f"committing offsets {dict(offsets)}: {exc!r}") from exc

    async def committed_offsets(self, partitions: Iterable[TopicPartition], *,
                                timeout: float = 120.0) -> dict[TopicPartition, int]:
        """Committed offsets of ``partitions``; -1 where the group has none.

        Waits while a pending transaction holds offsets for them, or while the group
        coordinator is unavailable, up to ``timeout`` seconds; then raises
        :class:`TransportError` (retriable).
        """
        wanted = sorted(partitions)
        if not wanted:
            return {}
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                result, retry = await self._fetch_offsets(wanted)
            except EoflowError:
                raise
            except RETRIABLE_GROUP_ERRORS as exc:
                result, retry = {}, f"{type(exc).__name__}"
            except Exception as exc:
                raise translate(exc, f"fetching committed offsets of {wanted}") from exc
            if retry is None:
                return {tp: result.get(tp, -1) for tp in wanted}
            if time.monotonic() > deadline:
                raise TransportError(
                    f"committed offsets of group {self._group_id!r} for "
                    f"{[str(tp) for tp in wanted]} stayed unavailable ({retry}) for "
                    f"{timeout:.0f}s")
            log.info("committed offsets not available yet (%s); retrying in %.1fs", retry,
                     delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _fetch_offsets(self, wanted: list[TopicPartition]
                             ) -> tuple[dict[TopicPartition, int], str | None]:
        client = self._consumer._client
        node_id = await client.coordinator_lookup(CoordinationType.GROUP, self._group_id)
        request = offset_fetch_request(self._group_id, [(tp.topic, tp.partition) for tp in wanted])
        response = await client.send(node_id, request, group=ConnectionGroup.COORDINATION)
        return _parse_offsets(response)


def _parse_offsets(response: Any) -> tuple[dict[TopicPartition, int], str | None]:
    """Offsets, or the error code to retry on (as text)."""
    if response.error_code in _RETRY_CODES:
        return {}, f"error {response.error_code}"
    if response.error_code != 0:
        raise TransportError(f"OffsetFetch failed with error code {response.error_code}")
    offsets: dict[TopicPartition, int] = {}
    for topic, partitions, _tags in response.topics:
        for partition, offset, _epoch, _meta, code, _ptags in partitions:
            if code in _RETRY_CODES:
                return {}, f"error {code} for {topic}[{partition}]"
            if code != 0:
                raise TransportError(
                    f"OffsetFetch for {topic}[{partition}] failed with error code {code}")
            offsets[TopicPartition(topic, partition)] = int(offset)
    return offsets, None
