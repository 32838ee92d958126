"""A consumer group as the broker sees it, for ``eoflow status``: members, assignment,
committed offsets against end offsets, and who committed last.

eoflow workers write ``{"by": instance id, "at": unix time}`` as the metadata of every
offset they commit (:func:`commit_metadata`), so the group's committed offsets also say
which worker committed each partition last, and when.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.structs import TopicPartition as KafkaTP

from eoflow.errors import TransportError

from .base import TopicPartition
from .membership import decode_instance, decode_url

__all__ = ["GroupView", "MemberView", "PartitionView", "commit_metadata", "describe_group"]


def commit_metadata(instance_id: str | None) -> str:
    """The metadata eoflow stores with each committed offset."""
    return json.dumps({"by": instance_id, "at": round(time.time(), 3)})


@dataclass(frozen=True)
class MemberView:
    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    url: str | None
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class PartitionView:
    tp: TopicPartition
    committed: int | None
    end: int | None
    #: Instance id and time of the last commit, from the offset's metadata.
    by: str | None = None
    at: float | None = None

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        return max(self.end - (self.committed if self.committed is not None else 0), 0)


@dataclass
class GroupView:
    group_id: str
    state: str
    protocol: str
    members: list[MemberView] = field(default_factory=list)
    partitions: dict[TopicPartition, PartitionView] = field(default_factory=dict)

    def last_commit(self, member: MemberView) -> float | None:
        """When ``member``'s instance last committed any partition (None: unknown)."""
        times = [p.at for p in self.partitions.values()
                 if p.at is not None and p.by is not None and p.by == member.instance_id]
        return max(times) if times else None


async def describe_group(bootstrap: str, group_id: str, topics: list[str],
                         client_options: Mapping[str, Any] | None = None) -> GroupView:
    """Describe ``group_id``; ``topics`` are the app's input topics (every partition of
    them is listed, assigned or not)."""
    options = dict(client_options or {})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                                **options)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                            isolation_level="read_committed", enable_auto_commit=False,
                            **options)
    try:
        await admin.start()
        await ends.start()
        view = _parse_group(group_id, await admin.describe_consumer_groups([group_id]))
        offsets = await admin.list_consumer_group_offsets(group_id)
        wanted = {KafkaTP(t, p) for t in topics for p in (ends.partitions_for_topic(t) or ())}
        wanted |= {KafkaTP(*tp) for m in view.members for tp in m.partitions}
        wanted |= set(offsets)
        end_offsets = await ends.end_offsets(sorted(wanted)) if wanted else {}
    except TransportError:
        raise
    except Exception as exc:
        raise TransportError(f"describing group {group_id!r} at {bootstrap}: {exc!r}") from exc
    finally:
        await ends.stop()
        await admin.close()
    for ktp in sorted(wanted):
        tp = TopicPartition(ktp.topic, ktp.partition)
        om = offsets.get(ktp)
        committed = om.offset if om is not None and om.offset >= 0 else None
        by, at = _who(om.metadata if om is not None else "")
        view.partitions[tp] = PartitionView(tp, committed, end_offsets.get(ktp), by, at)
    return view


def _parse_group(group_id: str, responses: list[Any]) -> GroupView:
    for response in responses:
        for group in response.to_object()["groups"]:
            if group.get("group") != group_id and group.get("group_id") != group_id:
                continue
            if group["error_code"]:
                raise TransportError(f"describing group {group_id!r}: error code "
                                     f"{group['error_code']}")
            view = GroupView(group_id, str(group.get("group_state") or group.get("state")),
                             str(group.get("protocol_data") or group.get("protocol") or ""))
            for member in group["members"]:
                view.members.append(_member(member))
            view.members.sort(key=lambda m: m.instance_id or m.member_id)
            return view
    return GroupView(group_id, "Dead", "")


def _member(member: dict[str, Any]) -> MemberView:
    metadata = member.get("member_metadata") or b""
    assignment = member.get("member_assignment") or b""
    url = instance = None
    if metadata:
        user_data = ConsumerProtocol.METADATA.decode(metadata).user_data
        url, instance = decode_url(user_data), decode_instance(user_data)
    partitions: tuple[TopicPartition, ...] = ()
    if assignment:
        decoded = ConsumerProtocol.ASSIGNMENT.decode(assignment)
        partitions = tuple(sorted(TopicPartition(t, p) for t, ps in decoded.assignment
                                  for p in ps))
    return MemberView(str(member["member_id"]), member.get("group_instance_id") or instance,
                      str(member.get("client_id", "")), str(member.get("client_host", "")),
                      url, partitions)


def _who(metadata: str) -> tuple[str | None, float | None]:
    try:
        found = json.loads(metadata or "null")
    except ValueError:
        return None, None
    if not isinstance(found, dict):
        return None, None
    by, at = found.get("by"), found.get("at")
    return (by if isinstance(by, str) else None,
            float(at) if isinstance(at, int | float) else None)
