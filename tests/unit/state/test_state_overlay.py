"""Overlay: read-your-writes over a committed store, discard on abort, atomic commit."""

from __future__ import annotations

import pytest

from eoflow._state.errors import StateError
from eoflow._state.overlay import Overlay
from eoflow._state.store import MemoryPartitionStore, StoreIdentity


@pytest.fixture
def store() -> MemoryPartitionStore:
    s = MemoryPartitionStore(StoreIdentity("app", "t", 0, 1))
    s.apply({b"a": b"1", b"b": b"2", b"d": b"4"}, 9)
    return s


def test_reads_see_own_writes_then_committed_values(store: MemoryPartitionStore) -> None:
    overlay = Overlay(store)
    overlay.set(b"a", b"new")
    overlay.set(b"c", b"3")
    assert overlay.get(b"a") == b"new"
    assert overlay.get(b"b") == b"2"
    assert overlay.get(b"c") == b"3"
    assert store.get(b"a") == b"1"  # nothing reaches the store before commit


def test_delete_hides_committed_value_and_set_after_delete_wins(
    store: MemoryPartitionStore,
) -> None:
    overlay = Overlay(store)
    overlay.delete(b"b")
    overlay.delete(b"zz")
    assert overlay.get(b"b") is None
    overlay.set(b"zz", b"back")
    assert overlay.get(b"zz") == b"back"
    assert overlay.writes() == {b"b": None, b"zz": b"back"}


def test_items_merge_in_key_order(store: MemoryPartitionStore) -> None:
    overlay = Overlay(store)
    overlay.set(b"c", b"3")
    overlay.set(b"a", b"one")
    overlay.delete(b"d")
    overlay.delete(b"x")
    assert list(overlay.items()) == [(b"a", b"one"), (b"b", b"2"), (b"c", b"3")]


def test_discard_forgets_writes_and_offset(store: MemoryPartitionStore) -> None:
    overlay = Overlay(store)
    overlay.set(b"a", b"new")
    overlay.note_changelog_offset(12)
    assert not overlay.is_empty
    overlay.discard()
    assert overlay.is_empty
    assert overlay.last_changelog_offset is None
    assert overlay.get(b"a") == b"1"


def test_note_changelog_offset_keeps_highest(store: MemoryPartitionStore) -> None:
    overlay = Overlay(store)
    for offset in (12, 15, 13):
        overlay.note_changelog_offset(offset)
    assert overlay.last_changelog_offset == 15


def test_write_to_store_applies_writes_and_offset_then_discard_clears(
    store: MemoryPartitionStore,
) -> None:
    overlay = Overlay(store)
    overlay.set(b"c", b"3")
    overlay.delete(b"a")
    overlay.note_changelog_offset(11)
    overlay.note_changelog_offset(10)
    overlay.write_to_store()
    assert store.changelog_offset == 11
    assert list(store.items()) == [(b"b", b"2"), (b"c", b"3"), (b"d", b"4")]
    overlay.discard()
    assert overlay.is_empty


def test_commit_of_empty_overlay_does_nothing(store: MemoryPartitionStore) -> None:
    Overlay(store).write_to_store()
    assert store.changelog_offset == 9


def test_commit_without_changelog_offset_is_refused(store: MemoryPartitionStore) -> None:
    overlay = Overlay(store)
    overlay.set(b"a", b"x")
    with pytest.raises(StateError, match="no changelog offset"):
        overlay.write_to_store()
    assert overlay.get(b"a") == b"x"  # kept: nothing was applied


def test_failed_commit_keeps_overlay(store: MemoryPartitionStore) -> None:
    overlay = Overlay(store)
    overlay.set(b"a", b"x")
    overlay.note_changelog_offset(9)  # not above the store's offset
    with pytest.raises(StateError):
        overlay.write_to_store()
    assert overlay.writes() == {b"a": b"x"}
    assert store.get(b"a") == b"1"


def test_a_stacked_overlay_reads_through_the_sealed_one_then_the_store(
    store: MemoryPartitionStore,
) -> None:
    """The next interval writes while the sealed one commits: reads see its own writes,
    then the sealed interval's, then the store; writes to the sealed one are refused."""
    sealed = Overlay(store)
    sealed.set(b"a", b"sealed")
    sealed.delete(b"b")
    sealed.set(b"c", b"3")
    sealed.stream_ms, sealed.due_ms = 1000, 2000
    above = sealed.stack()
    assert (above.stream_ms, above.due_ms) == (1000, 2000)
    with pytest.raises(StateError, match="after the interval"):
        sealed.set(b"x", b"late")
    above.set(b"c", b"above")
    above.set(b"b", b"back")
    assert [above.get(k) for k in (b"a", b"b", b"c", b"d")] == [b"sealed", b"back",
                                                                  b"above", b"4"]
    assert above.pending(b"a") == (True, b"sealed")
    assert above.pending(b"d") == (False, None)
    assert list(above.items()) == [(b"a", b"sealed"), (b"b", b"back"), (b"c", b"above"),
                                   (b"d", b"4")]
    assert list(above.items(b"b", b"d")) == [(b"b", b"back"), (b"c", b"above")]
    assert above.writes() == {b"c": b"above", b"b": b"back"}  # only its own go out


def test_a_stacked_overlay_reads_the_same_before_and_after_the_sealed_one_applies(
    store: MemoryPartitionStore,
) -> None:
    sealed = Overlay(store)
    sealed.set(b"a", b"sealed")
    sealed.delete(b"d")
    sealed.note_changelog_offset(10)
    above = sealed.stack()
    above.set(b"e", b"5")
    before = list(above.items())
    sealed.write_to_store()  # off the event loop: the sealed writes stay readable
    assert list(above.items()) == before
    above.settle()
    assert above.below is None and sealed.is_empty
    assert list(above.items()) == before
    assert store.changelog_offset == 10 and store.get(b"e") is None


def test_discarding_a_stacked_overlay_discards_the_sealed_one(
    store: MemoryPartitionStore,
) -> None:
    sealed = Overlay(store)
    sealed.set(b"a", b"sealed")
    above = sealed.stack()
    above.set(b"b", b"above")
    above.discard()
    assert above.below is None and sealed.is_empty
    assert list(above.items()) == [(b"a", b"1"), (b"b", b"2"), (b"d", b"4")]
    above.set(b"a", b"again")  # the next interval writes to it as to a new overlay
    assert above.get(b"a") == b"again"
