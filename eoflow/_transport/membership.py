"""Who owns which partition, and at which web address: published through the group protocol.

Every worker with the web server on puts its address in the user data of its group
subscription (``JoinGroup`` member metadata), and every worker its instance id (which
``eoflow status`` matches with the commits; aiokafka's DescribeGroups is too old a
version to return the group instance id). The group leader assigns partitions with the
range assignor, as before, and adds the whole map ``{web address: partitions}`` to the user
data of every member's assignment, so each worker learns where every partition lives at
the same moment it learns its own assignment (Kafka Streams publishes its host map the
same way). The assignor keeps aiokafka's ``"range"`` protocol name, so a group can mix
workers that publish an address and workers that do not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from .base import TopicPartition

__all__ = ["AdvertisingAssignor", "Peers", "decode_hosts", "decode_instance", "decode_url",
           "encode_hosts"]

#: Web address -> the partitions its worker owns.
Peers = dict[str, frozenset[TopicPartition]]


def decode_url(user_data: bytes | None) -> str | None:
    """The web address in a member's subscription user data, if it published one."""
    return _published(user_data, "url")


def decode_instance(user_data: bytes | None) -> str | None:
    """The instance id in a member's subscription user data, if it published one."""
    return _published(user_data, "instance")


def _published(user_data: bytes | None, field: str) -> str | None:
    try:
        found = json.loads(user_data or b"null")
    except ValueError:
        return None
    value = found.get(field) if isinstance(found, dict) else None
    return value if isinstance(value, str) else None


def encode_hosts(hosts: Mapping[str, Iterable[TopicPartition]]) -> bytes:
    table = {url: sorted([tp.topic, tp.partition] for tp in tps) for url, tps in hosts.items()}
    return json.dumps({"hosts": table}, sort_keys=True).encode()


def decode_hosts(user_data: bytes | None) -> Peers:
    """The host map the leader put in an assignment's user data (empty if none)."""
    try:
        found = json.loads(user_data or b"null")
    except ValueError:
        return {}
    hosts = found.get("hosts") if isinstance(found, dict) else None
    if not isinstance(hosts, dict):
        return {}
    return {url: frozenset(TopicPartition(str(t), int(p)) for t, p in tps)
            for url, tps in hosts.items()}


class AdvertisingAssignor(RangePartitionAssignor):
    """The range assignor, plus every member's web address in the assignment.

    Used as an instance (aiokafka only calls ``name``, ``metadata``, ``assign`` and
    ``on_assignment`` on it): :attr:`url` is set before the consumer joins, and
    :attr:`peers` holds the host map of the last assignment.
    """

    def __init__(self, instance_id: str | None = None) -> None:
        self.url: str | None = None
        self.instance_id = instance_id
        self.peers: Peers = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        published = {k: v for k, v in (("url", self.url), ("instance", self.instance_id)) if v}
        data = json.dumps(published).encode() if published else b""
        return ConsumerProtocolMemberMetadata(self.version, list(topics), data)

    def assign(self, cluster: Any,
               members: Mapping[str, ConsumerProtocolMemberMetadata]
               ) -> dict[str, ConsumerProtocolMemberAssignment]:
        assignments = RangePartitionAssignor.assign(cluster, members)
        hosts: dict[str, list[TopicPartition]] = {}
        for member_id, assignment in assignments.items():
            url = decode_url(members[member_id].user_data)
            if url is not None:
                hosts[url] = [TopicPartition(topic, p)
                              for topic, partitions in assignment.assignment
                              for p in partitions]
        data = encode_hosts(hosts)
        return {member_id: ConsumerProtocolMemberAssignment(a.version, a.assignment, data)
                for member_id, a in assignments.items()}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.peers = decode_hosts(assignment.user_data)
