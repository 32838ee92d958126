"""The bytes of the request versions eoflow adds, pinned against Kafka's JSON schemas."""

from __future__ import annotations

import io

from eoflow._transport.protocol import (
    GroupMetadata,
    OffsetFetchResponse_v7,
    TxnOffsetCommitResponse_v3,
    offset_fetch_request,
    txn_offset_commit_request,
)


def test_txn_offset_commit_v3_carries_group_metadata() -> None:
    group = GroupMetadata("g", 5, "m-1", "inst")
    request = txn_offset_commit_request(
        transactional_id="t", producer_id=7, producer_epoch=1, group=group,
        offsets={("a", 0): (10, "")})
    struct = request.prepare({28: (0, 4)})
    assert struct.API_VERSION == 3 and struct.FLEXIBLE_VERSION
    expected = bytes.fromhex(
        "0274"  # transactional_id "t" (compact: length+1)
        "0267"  # group_id "g"
        "0000000000000007"  # producer_id
        "0001"  # producer_epoch
        "00000005"  # generation_id
        "046d2d31"  # member_id "m-1"
        "05696e7374"  # group_instance_id "inst"
        "02"  # one topic
        "0261"  # "a"
        "02"  # one partition
        "00000000"  # partition 0
        "000000000000000a"  # offset 10
        "ffffffff"  # committed_leader_epoch -1
        "01"  # metadata ""
        "00" "00" "00"  # tagged fields: partition, topic, request
    )
    assert struct.encode() == expected


def test_txn_offset_commit_groups_partitions_by_topic_in_order() -> None:
    request = txn_offset_commit_request(
        transactional_id="t", producer_id=1, producer_epoch=0,
        group=GroupMetadata("g", 1, "m", None),
        offsets={("b", 1): (5, ""), ("a", 2): (3, ""), ("b", 0): (4, "")})
    struct = request.prepare({28: (0, 4)})
    topics = [(name, [p[0] for p in parts]) for name, parts, _ in struct.topics]
    assert topics == [("a", [2]), ("b", [0, 1])]
    assert struct.group_instance_id is None
    assert struct.encode()[2 + 2 + 8 + 2 + 4 + 2] == 0  # null instance id: compact length 0


def test_offset_fetch_v7_asks_for_stable_offsets() -> None:
    struct = offset_fetch_request("g", [("a", 1), ("a", 0)]).prepare({9: (0, 9)})
    assert struct.API_VERSION == 7
    assert struct.encode() == bytes.fromhex("0267" "02" "0261" "03" "00000000" "00000001"
                                            "00" "01" "00")


def test_responses_decode() -> None:
    txn = bytes.fromhex("00000000" "02" "0261" "02" "00000000" "0016" "00" "00" "00")
    decoded = TxnOffsetCommitResponse_v3.decode(io.BytesIO(txn))
    assert decoded.topics == [("a", [(0, 22, {})], {})]
    fetch = bytes.fromhex("00000000" "02" "0261" "02" "00000003" "000000000000002a"
                          "ffffffff" "01" "0000" "00" "00" "0000" "00")
    decoded = OffsetFetchResponse_v7.decode(io.BytesIO(fetch))
    assert decoded.topics[0][1][0][:2] == (3, 42) and decoded.error_code == 0


def test_group_metadata_validity() -> None:
    assert GroupMetadata("g", 0, "m", None).is_valid()
    assert not GroupMetadata("g", -1, "m", None).is_valid()
    assert not GroupMetadata("g", 3, "", None).is_valid()
