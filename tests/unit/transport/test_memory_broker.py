"""The in-memory broker models what the commit cycle relies on: visibility, LSO, fencing,
group generations. If this model drifts from Kafka, tests on it stop meaning anything."""

from __future__ import annotations

import pytest

from eoflow._transport.base import GroupMetadata, TopicPartition
from eoflow._transport.memory import MemoryBroker
from eoflow.errors import CommitFailedError, ProducerFencedError

TP = TopicPartition("t", 0)


def broker() -> MemoryBroker:
    b = MemoryBroker(clock=lambda: 1000.0)
    b.create_topic("t", 1)
    return b


def rec(value: bytes) -> tuple[bytes | None, bytes | None, int | None, tuple[()]]:
    return (None, value, None, ())


def committed_values(b: MemoryBroker) -> list[bytes | None]:
    return [r.value for r in b.log("t", 0).read(0, 100)[0]]


def test_records_of_a_transaction_are_invisible_until_commit_and_gone_after_abort() -> None:
    b = broker()
    epoch = b.init_producer("p")
    b.append("p", epoch, "t", 0, [rec(b"1")])
    log = b.log("t", 0)
    assert committed_values(b) == [] and log.last_stable_offset == 0
    assert [r.value for r in log.read(0, 100, committed=False)[0]] == [b"1"]
    b.end_transaction("p", epoch, commit=True)
    assert committed_values(b) == [b"1"]
    b.append("p", epoch, "t", 0, [rec(b"2")])
    b.end_transaction("p", epoch, commit=False)
    assert committed_values(b) == [b"1"]
    _, position = log.read(0, 100)
    assert position == log.high_watermark == 4  # two records, two markers


def test_an_open_transaction_holds_the_lso_below_later_committed_records() -> None:
    b = broker()
    old, new = b.init_producer("old"), b.init_producer("new")
    b.append("old", old, "t", 0, [rec(b"zombie")])
    b.append("new", new, "t", 0, [rec(b"2")])
    b.end_transaction("new", new, commit=True)
    log = b.log("t", 0)
    assert log.last_stable_offset == 0 and log.high_watermark == 3
    assert committed_values(b) == []
    b.init_producer("old")  # a restarted producer with the same id aborts it
    assert committed_values(b) == [b"2"]


def test_a_new_epoch_fences_the_old_producer() -> None:
    b = broker()
    first = b.init_producer("p")
    b.init_producer("p")
    with pytest.raises(ProducerFencedError):
        b.append("p", first, "t", 0, [rec(b"x")])


async def test_offsets_with_a_stale_generation_are_refused_and_others_wait_for_commit() -> None:
    b = broker()

    class Member:
        member_id, instance_id, topics = "m1", "i1", {"t"}
        generation = -1

        async def revoked(self) -> None: ...

        async def assigned(self, partitions: set[TopicPartition], generation: int) -> None:
            self.generation = generation

        def fenced(self) -> None: ...

        def expired(self) -> None: ...

    member = Member()
    await b.join("g", member)
    epoch = b.init_producer("p")
    current = GroupMetadata("g", member.generation, "m1", "i1")
    with pytest.raises(CommitFailedError, match="ILLEGAL_GENERATION"):
        b.add_offsets("p", epoch, GroupMetadata("g", member.generation - 1, "m1", "i1"),
                      {TP: 5})
    with pytest.raises(CommitFailedError, match="UNKNOWN_MEMBER_ID"):
        b.add_offsets("p", epoch, GroupMetadata("g", member.generation, "m2", None), {TP: 5})
    b.add_offsets("p", epoch, current, {TP: 5})
    assert b.committed("g", [TP]) == ({TP: -1}, True)  # held by the open transaction
    b.end_transaction("p", epoch, commit=True)
    assert b.committed("g", [TP]) == ({TP: 5}, False)


def test_injected_faults_fire_the_given_number_of_times() -> None:
    b = broker()
    b.inject("commit", RuntimeError("boom"), times=2, when=lambda **d: True)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            b.check_fault("commit")
    b.check_fault("commit")
