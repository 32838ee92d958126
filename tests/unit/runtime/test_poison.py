"""Poison bookkeeping: counts survive rebalances and other commits, go with their commit."""

from __future__ import annotations

import pytest

from eoflow._runtime import poison
from eoflow._runtime.poison import PoisonKey, PoisonLedger
from eoflow._stream import Event
from eoflow._transport.base import TopicPartition


def key(offset: int, partition: int = 0) -> PoisonKey:
    return PoisonKey("agent", "t", partition, offset)


def test_an_event_is_exhausted_after_max_retries_failures() -> None:
    ledger = PoisonLedger(max_retries=3)
    for tries in (1, 2):
        assert ledger.failed(key(7), RuntimeError("boom")) == tries
        assert not ledger.exhausted(key(7))
    ledger.failed(key(7), ValueError("again"))
    assert ledger.exhausted(key(7))
    assert ledger.last_error(key(7)) == "ValueError: again"


def test_counts_are_kept_until_a_commit_moves_past_the_event() -> None:
    ledger = PoisonLedger(max_retries=3)
    ledger.failed(key(7), RuntimeError())
    ledger.failed(key(3, partition=1), RuntimeError())
    # Another partition committed, and this one committed up to the event: both kept.
    ledger.forget_committed({TopicPartition("t", 0): 7, TopicPartition("u", 0): 100})
    assert ledger.tries(key(7)) == 1 and ledger.tries(key(3, partition=1)) == 1
    ledger.forget_committed({TopicPartition("t", 0): 8})
    assert ledger.tries(key(7)) == 0 and ledger.tries(key(3, partition=1)) == 1


def test_the_ledger_is_bounded_dropping_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poison, "MAX_ENTRIES", 3)
    ledger = PoisonLedger(max_retries=3)
    for offset in range(3):
        ledger.failed(key(offset), RuntimeError())
    ledger.failed(key(0), RuntimeError())  # refreshed: now the youngest
    ledger.failed(key(9), RuntimeError())
    assert len(ledger) == 3
    assert ledger.tries(key(1)) == 0  # the oldest went
    assert ledger.tries(key(0)) == 2


def test_the_key_of_an_agent_and_its_event() -> None:
    event = Event("k", {"v": 1}, "t", 3, 17, 0, ())
    assert PoisonKey.of("agent", event) == PoisonKey("agent", "t", 3, 17)
