"""Decoding a fetched partition's records into events, the batch way and one by one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

import eoflow
from eoflow._runtime.dispatcher import _decode, _decode_all
from eoflow._stream import Event
from eoflow.errors import SerializationError


@dataclass
class Record:
    offset: int
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "in"
    partition: int = 2
    timestamp: int = 1_000
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def test_a_batch_decodes_as_one_record_at_a_time_does() -> None:
    topic = eoflow.App("a").topic("in", key_serializer="str")
    records = [Record(0, json.dumps({"i": 0}).encode()),
               Record(1, None, key=None, headers=[("h", b"v")]),
               Record(2, b"[1, 2]", timestamp=5)]
    events = _decode_all(topic, records)
    assert events == [_decode(topic, r) for r in records]
    assert all(type(e) is Event for e in events)
    assert events[1] == Event(None, None, "in", 2, 1, 1_000, (("h", b"v"),))


def test_a_batch_stops_before_the_first_record_that_cannot_be_decoded() -> None:
    topic = eoflow.App("a").topic("in")
    records = [Record(0, b"1"), Record(1, b"{not json"), Record(2, b"2")]
    assert [e.value for e in _decode_all(topic, records)] == [1]
    with pytest.raises(SerializationError, match=r"in\[2\]@1"):
        _decode(topic, records[1])


def test_a_batch_reads_event_time_with_the_topics_extractor() -> None:
    topic = eoflow.App("a").topic("in", timestamp_extractor="at")
    records = [Record(0, b'{"at": 2}'), Record(1, b'{"at": -1}')]
    assert [e.timestamp for e in _decode_all(topic, records)] == [2_000]
