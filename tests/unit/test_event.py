"""Event: what an agent gets per record (a named tuple since issue 16; still immutable)."""

from __future__ import annotations

import pytest

from eoflow import Event


def test_event_is_immutable_and_names_its_coordinates() -> None:
    event: Event[str, dict[str, int]] = Event("k", {"n": 1}, "in", 3, 42, 1700000000000, ())
    assert (event.key, event.value, event.topic, event.partition, event.offset,
            event.timestamp, event.headers) == ("k", {"n": 1}, "in", 3, 42, 1700000000000, ())
    assert event.describe() == "in[3]@42"
    with pytest.raises(AttributeError):
        event.key = "other"  # type: ignore[misc]
