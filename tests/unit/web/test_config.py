"""Client options pass through, checked at start; every setting comes from EOFLOW_*."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import eoflow
from eoflow._runtime.worker import Worker
from eoflow._settings import Settings, settings_from_env
from eoflow._transport.kafka import KafkaTransport
from eoflow._transport.membership import (
    AdvertisingAssignor,
    decode_hosts,
    decode_instance,
    decode_url,
)
from eoflow.errors import ConfigurationError


def test_every_setting_is_read_from_the_environment_with_its_type() -> None:
    env = {"EOFLOW_WEB_ENABLED": "yes", "EOFLOW_WEB_PORT": "7000",
           "EOFLOW_CONSUMER_OPTIONS": '{"fetch_max_bytes": 1048576}',
           "EOFLOW_PRODUCER_OPTIONS": '{"linger_ms": 5}', "EOFLOW_COMPRESSION_TYPE": "gzip",
           "EOFLOW_AUTO_OFFSET_RESET": "latest", "EOFLOW_INSTANCE_ID": "",
           "EOFLOW_COMMIT_INTERVAL": "0.5"}
    found = settings_from_env(env)
    assert found == {"web_enabled": True, "web_port": 7000,
                     "consumer_options": {"fetch_max_bytes": 1048576},
                     "producer_options": {"linger_ms": 5}, "compression_type": "gzip",
                     "auto_offset_reset": "latest", "instance_id": None,
                     "commit_interval": 0.5}
    settings = Settings(app_id="a", **found)  # type: ignore[arg-type]
    assert settings.consumer_options["fetch_max_bytes"] == 1048576


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EOFLOW_WEB_PORT", "7000")
    monkeypatch.setenv("EOFLOW_COMPRESSION_TYPE", "lz4")
    app = eoflow.App("a", web_port=7001)
    assert (app.settings.web_port, app.settings.compression_type) == (7001, "lz4")


@pytest.mark.parametrize(("env", "message"), [
    ({"EOFLOW_WEB_ENABLED": "maybe"}, "EOFLOW_WEB_ENABLED='maybe': expected true or false"),
    ({"EOFLOW_CONSUMER_OPTIONS": "[1]"}, "EOFLOW_CONSUMER_OPTIONS='[1]': expected a JSON"),
    ({"EOFLOW_WEB_PORT": "http"}, "EOFLOW_WEB_PORT='http': expected a int"),
])
def test_a_bad_environment_value_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[")):
        settings_from_env(env)


@pytest.mark.parametrize(("settings", "message"), [
    ({"compression_type": "brotli"}, "compression_type='brotli'"),
    ({"auto_offset_reset": "none"}, "auto_offset_reset='none'"),
    ({"web_port": 70000}, "web_port=70000"),
    ({"consumer_options": ["fetch_max_bytes"]}, "consumer_options="),
])
def test_bad_settings_are_refused_at_declaration(settings: dict[str, Any],
                                                 message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings(app_id="a", **settings)


@pytest.mark.parametrize(("options", "message"), [
    ({"consumer_options": {"fetch_max_byte": 1}},
     "consumer_options: 'fetch_max_byte' is not an option of aiokafka's AIOKafkaConsumer; "
     "did you mean 'fetch_max_bytes'"),
    ({"consumer_options": {"isolation_level": "read_uncommitted"}},
     "'isolation_level' is set by eoflow"),
    ({"consumer_options": {"session_timeout_ms": 1000}}, "use the session_timeout setting"),
    ({"producer_options": {"linger_ms": "5"}}, "linger_ms='5' should be a number"),
    ({"producer_options": {"compression_type": "gzip"}}, "use the compression_type setting"),
])
def test_client_options_are_checked_naming_the_option(options: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        KafkaTransport("127.0.0.1:9", **options)


async def test_a_bad_option_stops_the_worker_at_start_before_any_kafka_io(
        tmp_path: Path) -> None:
    app = eoflow.App(f"c-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:9",
                     datadir=tmp_path, consumer_options={"fetch_min_bytes": "ten"})
    with pytest.raises(ConfigurationError, match=r"fetch_min_bytes=.ten."):
        await Worker(app).run()


async def test_a_value_aiokafka_refuses_is_reported_with_the_setting() -> None:
    transport = KafkaTransport("127.0.0.1:9", consumer_options={"security_protocol": "NOPE"})
    with pytest.raises(ConfigurationError, match=r"consumer_options=.*security_protocol.*NOPE"):
        transport.group_consumer(group_id="g", instance_id="i", client_id="c",
                                 session_timeout=10, max_poll_interval=300)


def test_the_leader_publishes_every_members_address_in_the_assignment() -> None:
    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3}

    one, two, silent = AdvertisingAssignor(), AdvertisingAssignor(), AdvertisingAssignor()
    one.url, two.url = "http://a:1", "http://b:2"
    members = {"m1": one.metadata(["in"]), "m2": two.metadata(["in"]),
               "m3": silent.metadata(["in"])}
    assert decode_url(members["m1"].user_data) == "http://a:1"
    assert decode_url(members["m3"].user_data) is None
    assignments = one.assign(Cluster(), members)
    assert [a.assignment for a in assignments.values()] == [
        [("in", [0, 1])], [("in", [2])], [("in", [3])]]  # the range assignor's, unchanged
    two.on_assignment(assignments["m2"])
    assert {url: sorted(tp.partition for tp in tps) for url, tps in two.peers.items()} == {
        "http://a:1": [0, 1], "http://b:2": [2]}
    assert decode_hosts(b"garbage") == {}


def test_every_member_publishes_its_instance_id_for_eoflow_status() -> None:
    """aiokafka's DescribeGroups does not return the group instance id: the member
    metadata carries it, with or without a web address."""
    web, quiet = AdvertisingAssignor("w-1"), AdvertisingAssignor("w-2")
    web.url = "http://a:1"
    assert decode_instance(web.metadata(["in"]).user_data) == "w-1"
    assert decode_url(web.metadata(["in"]).user_data) == "http://a:1"
    assert decode_instance(quiet.metadata(["in"]).user_data) == "w-2"
    assert decode_url(quiet.metadata(["in"]).user_data) is None
