"""The declarative API: settings validation, serializers, tables outside events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import eoflow
from eoflow._inbox import Inbox
from eoflow._serde import codec_for
from eoflow._settings import Settings, parse_broker
from eoflow._stream import Event, InFlight, Source, Stream, current_event
from eoflow.errors import ConfigurationError, SerializationError, TableUsageError


def test_broker_urls() -> None:
    assert parse_broker("kafka://127.0.0.1:9092") == "127.0.0.1:9092"
    assert parse_broker("kafka://a:1;kafka://b") == "a:1,b:9092"
    with pytest.raises(ConfigurationError, match="scheme"):
        parse_broker("http://x:1")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"app_id": "bad id"}, "may only contain"),
    ({"app_id": "a", "processing_guarantee": "maybe"}, "processing_guarantee"),
    ({"app_id": "a", "commit_interval": 40.0}, "transaction_timeout"),
    ({"app_id": "a", "on_error": "ignore"}, "on_error"),
])
def test_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings(**kwargs)


def test_settings_names_internal_topics() -> None:
    settings = Settings(app_id="wc")
    assert settings.changelog_topic("counts") == "wc-counts-changelog"
    assert settings.dlq_topic == "wc-dlq"
    assert settings.exactly_once


def test_codecs_round_trip_and_fail_clearly() -> None:
    assert codec_for("json").loads(codec_for("json").dumps({"a": [1]})) == {"a": [1]}
    assert codec_for("str").dumps("é") == "é".encode()
    assert codec_for("raw").dumps(b"x") == b"x"
    with pytest.raises(SerializationError):
        codec_for("raw").dumps(3)
    with pytest.raises(ConfigurationError, match="unknown serializer"):
        codec_for("yaml")


def test_faust_defaults_raw_keys_json_values() -> None:
    app = eoflow.App("a")
    topic = app.topic("t")
    assert topic.encode(b"k", {"v": 1}) == (b"k", b'{"v":1}')
    assert topic.encode(None, None) == (None, None)


def test_table_outside_an_event_names_the_fix() -> None:
    app = eoflow.App("a")
    counts = app.Table("counts", default=int)
    with pytest.raises(TableUsageError, match=r"counts.partition\(N\)"):
        counts["x"] += 1


def test_table_without_a_running_worker_is_a_clear_error() -> None:
    app = eoflow.App("a")
    counts = app.Table("counts", default=int)
    token = current_event.set(Event(None, None, "t", 0, 0, 0, ()))
    try:
        with pytest.raises(ConfigurationError, match="no worker"):
            counts["x"]
    finally:
        current_event.reset(token)


def test_declaring_twice_is_refused() -> None:
    app = eoflow.App("a")
    app.Table("t")
    with pytest.raises(ConfigurationError):
        app.Table("t")


async def test_stream_marks_events_processed_when_the_next_is_requested() -> None:
    inbox: Inbox[Event[Any, Any]] = Inbox()
    in_flight = InFlight()
    stream: Stream[Any, Any] = Stream(Source(inbox, in_flight))
    in_flight.add(2)
    inbox.put([Event(None, i, "t", 0, i, 0, ()) for i in range(2)])
    values = aiter(stream)
    assert await anext(values) == 0
    assert in_flight.count == 2  # the first is in hand, not processed yet
    assert await anext(values) == 1
    assert in_flight.count == 1
    waiter = asyncio.ensure_future(anext(values))
    await asyncio.sleep(0)
    assert in_flight.count == 0  # asking for the third marks the second processed
    waiter.cancel()


def test_app_and_settings_share_their_defaults() -> None:
    from pathlib import Path

    app = eoflow.App("shop")
    assert app.settings == Settings(app_id="shop")
    assert app.settings.datadir == Path("./shop-data")
    assert eoflow.App("shop", datadir="/tmp/x").settings.datadir == Path("/tmp/x")


def test_settings_come_from_arguments_then_the_environment_then_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EOFLOW_COMMIT_INTERVAL", "0.5")
    monkeypatch.setenv("EOFLOW_TRANSACTION_TIMEOUT", "30")
    monkeypatch.setenv("EOFLOW_ON_ERROR", "fail")
    app = eoflow.App("env", commit_interval=0.2)
    assert app.settings.commit_interval == 0.2  # the argument wins
    assert app.settings.transaction_timeout == 30.0  # then the environment
    assert app.settings.on_error == "fail"
    assert app.settings.max_retries == 3  # then the default
    monkeypatch.setenv("EOFLOW_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError, match="EOFLOW_MAX_RETRIES='many': expected a int"):
        eoflow.App("env")
