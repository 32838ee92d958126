"""Kafka request versions eoflow needs and aiokafka 0.14 does not speak.

aiokafka only sends ``TxnOffsetCommit`` v0, which carries no consumer-group metadata, so
the group coordinator cannot fence a zombie that was kicked out of the group (KIP-447).
It also fetches committed offsets without ``require_stable``, so a partition can start
from an offset that a still-pending transaction is about to move.

This module adds, on aiokafka's own protocol primitives:

* ``TxnOffsetCommit`` v3 (flexible): generation id, member id and group instance id.
* ``OffsetFetch`` v7 (flexible): ``require_stable``; the broker answers
  ``UNSTABLE_OFFSET_COMMIT`` while a transaction holding offsets for the group is open.

Field layouts follow Kafka's ``TxnOffsetCommitRequest.json`` and
``OffsetFetchRequest.json``; the unit tests pin the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from .base import GroupMetadata

__all__ = [
    "GroupMetadata",
    "OffsetFetchRequestV7",
    "TxnOffsetCommitRequestV3",
    "offset_fetch_request",
    "txn_offset_commit_request",
]

NO_LEADER_EPOCH = -1


def _by_topic(items: Iterable[tuple[str, Any]]) -> list[tuple[str, list[Any], dict[int, bytes]]]:
    """``(topic, entry)`` pairs to the protocol's ``[(topic, [entries], tags)]`` shape."""
    grouped: dict[str, list[Any]] = {}
    for topic, entry in items:
        grouped.setdefault(topic, []).append(entry)
    return [(topic, entries, {}) for topic, entries in grouped.items()]


class TxnOffsetCommitResponse_v3(Response):
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("committed_metadata", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


_TxnOffsetCommitStruct: TypeAlias = TxnOffsetCommitRequest_v3


class TxnOffsetCommitRequestV3(Request[_TxnOffsetCommitStruct]):
    """TxnOffsetCommit that only exists at v3: the broker must support KIP-447 (2.5+)."""

    API_KEY = 28

    def __init__(self, fields: tuple[Any, ...]) -> None:
        self._fields = fields

    def build(self, request_struct_class: type[_TxnOffsetCommitStruct]) -> _TxnOffsetCommitStruct:
        return request_struct_class(*self._fields)


def txn_offset_commit_request(
    *,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    group: GroupMetadata,
    offsets: dict[tuple[str, int], tuple[int, str]],
) -> TxnOffsetCommitRequestV3:
    """Build a v3 TxnOffsetCommit for ``offsets``: ``(topic, partition) -> (offset, metadata)``."""
    topics = _by_topic(
        (topic, (partition, offset, NO_LEADER_EPOCH, metadata, {}))
        for (topic, partition), (offset, metadata) in sorted(offsets.items())
    )
    return TxnOffsetCommitRequestV3(
        (
            transactional_id,
            group.group_id,
            producer_id,
            producer_epoch,
            group.generation_id,
            group.member_id,
            group.group_instance_id,
            topics,
            {},
        )
    )


class OffsetFetchResponse_v7(Response):
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v7(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


_OffsetFetchStruct: TypeAlias = OffsetFetchRequest_v7


class OffsetFetchRequestV7(Request[_OffsetFetchStruct]):
    """OffsetFetch at v7 only: ``require_stable`` needs a KIP-447 broker (2.5+)."""

    API_KEY = 9

    def __init__(self, fields: tuple[Any, ...]) -> None:
        self._fields = fields

    def build(self, request_struct_class: type[_OffsetFetchStruct]) -> _OffsetFetchStruct:
        return request_struct_class(*self._fields)


def offset_fetch_request(
    group_id: str, partitions: list[tuple[str, int]], *, require_stable: bool = True
) -> OffsetFetchRequestV7:
    """Build a v7 OffsetFetch for ``partitions`` of ``group_id``."""
    topics = _by_topic(sorted(partitions))
    return OffsetFetchRequestV7((group_id, topics, require_stable, {}))
