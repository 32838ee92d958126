"""Restore logic against a fake changelog: where it starts, what is stale, when it ends.

The fake reader models a transactional changelog partition read ``read_committed``:
records of open transactions are invisible and hold the position at the LSO; records of
aborted transactions are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from eoflow._state.errors import RestoreError
from eoflow._state.restore import RestoreStats, plan_start, restore
from eoflow._state.store import MemoryPartitionStore, StoreIdentity


@dataclass(frozen=True)
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeChangelog:
    """One partition: entries are (key, value, txn id); txn status decides visibility."""

    entries: list[tuple[bytes, bytes | None, int]] = field(default_factory=list)
    status: dict[int, str] = field(default_factory=dict)  # txn -> open|committed|aborted
    log_start: int = 0
    position: int = 0

    def write(self, txn: int, *records: tuple[bytes, bytes | None]) -> None:
        self.status.setdefault(txn, "open")
        self.entries.extend((k, v, txn) for k, v in records)

    @property
    def lso(self) -> int:
        for offset, (_, _, txn) in enumerate(self.entries):
            if self.status[txn] == "open":
                return offset
        return len(self.entries)

    async def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        return self.log_start, len(self.entries)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.position = offset

    async def read(self, topic: str, partition: int, max_records: int,
                   timeout: float) -> tuple[Sequence[Rec], int]:
        await asyncio.sleep(0)
        out: list[Rec] = []
        end = self.lso
        while self.position < end and len(out) < max_records:
            key, value, txn = self.entries[self.position]
            if self.status[txn] == "committed":
                out.append(Rec(self.position, key, value))
            self.position += 1
        return out, self.position


def store() -> MemoryPartitionStore:
    return MemoryPartitionStore(StoreIdentity("app", "t", 0, 1))


def test_plan_start() -> None:
    assert plan_start(None, 5, 10) == 5
    assert plan_start(6, 0, 10) == 7
    assert plan_start(9, 0, 10) == 10  # caught up
    assert plan_start(10, 0, 10) is None  # at or past the high watermark: another log
    assert plan_start(2, 5, 10) is None  # below the log start: records were deleted


async def test_a_store_past_the_lso_but_below_the_high_watermark_is_kept() -> None:
    log = FakeChangelog()
    log.write(1, (b"a", b"1"))
    log.status[1] = "committed"
    log.write(2, (b"a", b"zombie"))  # a dead worker's transaction, still open
    log.write(3, (b"a", b"2"), (b"b", b"2"))
    log.status[3] = "committed"
    s = store()
    s.apply({b"a": b"2", b"b": b"2"}, 3)  # its owner applied offsets 2..3 after commit

    async def abort_later() -> None:
        await asyncio.sleep(0.2)
        log.status[2] = "aborted"

    aborting = asyncio.create_task(abort_later())
    stats = await restore(log, "cl", 0, s)
    await aborting
    assert not stats.rebuilt
    assert dict(s.items()) == {b"a": b"2", b"b": b"2"}


async def test_restore_waits_for_committed_records_above_an_open_transaction() -> None:
    log = FakeChangelog()
    log.write(1, (b"a", b"1"))
    log.status[1] = "committed"
    log.write(2, (b"a", b"zombie"))
    log.write(3, (b"a", b"2"), (b"b", b"2"))
    log.status[3] = "committed"
    s = store()

    async def abort_later() -> None:
        await asyncio.sleep(0.2)
        log.status[2] = "aborted"

    aborting = asyncio.create_task(abort_later())
    stats = await restore(log, "cl", 0, s)
    await aborting
    assert dict(s.items()) == {b"a": b"2", b"b": b"2"}
    assert stats.records == 3 and stats.end_offset == 4


async def test_a_transaction_that_never_ends_raises_a_retriable_error_keeping_the_prefix() -> None:
    log = FakeChangelog()
    log.write(1, (b"a", b"1"))
    log.status[1] = "committed"
    log.write(2, (b"a", b"never"))
    s = store()
    with pytest.raises(RestoreError, match=r"cl\[0\].*offset 1") as caught:
        await restore(log, "cl", 0, s, max_wait=0.3)
    assert caught.value.retriable
    assert dict(s.items()) == {b"a": b"1"} and s.changelog_offset == 0


async def test_a_store_from_another_log_is_wiped_and_rebuilt() -> None:
    log = FakeChangelog()
    log.write(1, (b"a", b"1"), (b"b", None))
    log.status[1] = "committed"
    s = store()
    s.apply({b"ghost": b"x"}, 1000)
    stats = await restore(log, "cl", 0, s)
    assert stats.rebuilt
    assert dict(s.items()) == {b"a": b"1"}


async def test_tombstones_delete_and_aborted_records_are_skipped() -> None:
    log = FakeChangelog()
    log.write(1, (b"a", b"1"), (b"b", b"1"))
    log.status[1] = "committed"
    log.write(2, (b"a", b"aborted"))
    log.status[2] = "aborted"
    log.write(3, (b"b", None))
    log.status[3] = "committed"
    s = store()
    stats = await restore(log, "cl", 0, s)
    assert dict(s.items()) == {b"a": b"1"}
    assert stats.records == 3 and s.changelog_offset == 3


async def test_unreachable_broker_raises_restore_error_naming_the_partition() -> None:
    from eoflow.testing import restore_partition

    s = store()
    with pytest.raises(RestoreError, match=r"app-t-changelog\[2\]|cannot connect") as caught:
        await restore_partition("127.0.0.1:1", ("app-t-changelog", 2), s)
    assert caught.value.retriable
    assert s.changelog_offset is None


def test_stats_rate() -> None:
    stats = RestoreStats(
        "t", 0, records=500, seconds=2.0, start_offset=0, end_offset=600, rebuilt=False
    )
    assert stats.records_per_second == 250.0
