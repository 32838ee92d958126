"""Reading a topic's limits right after creating it, on a cluster whose nodes learn of the
topic at different moments."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from eoflow._transport import admin as admin_module
from eoflow._transport.admin import TopicSpec, ensure_topics

UNKNOWN_TOPIC, TOPIC_AUTHORIZATION_FAILED = 3, 29


class _Response:
    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self._resources = resources

    def to_object(self) -> dict[str, Any]:
        return {"resources": self._resources}


def _answer(topic: str, code: int = 0, **configs: str) -> dict[str, Any]:
    return {"error_code": code, "error_message": "not here" if code else None,
            "resource_type": 2, "resource_name": topic,
            "config_entries": [{"config_names": k.replace("_", "."), "config_value": v}
                               for k, v in configs.items()]}


class _Admin:
    """Answers DescribeConfigs from a script, one answer per call; the topic exists."""

    script: list[dict[str, Any]] = []
    calls = 0

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"topic": n, "error_code": 0, "partitions": [{"partition": 0}]} for n in names]

    async def describe_configs(self, resources: list[Any]) -> list[_Response]:
        type(self).calls += 1
        return [_Response([type(self).script.pop(0)])]


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> type[_Admin]:
    monkeypatch.setattr(admin_module, "AIOKafkaAdminClient", _Admin)
    _Admin.calls = 0
    return _Admin


async def test_a_node_that_does_not_know_the_topic_yet_is_asked_again(
    fake_admin: type[_Admin],
) -> None:
    # The first node asked has not applied the topic's metadata yet; taking Kafka's defaults
    # then would let eoflow build batches larger than this topic accepts.
    fake_admin.script = [_answer("t", UNKNOWN_TOPIC),
                         _answer("t", max_message_bytes="4096", delete_retention_ms="60000")]
    topics = await ensure_topics("b:9092", [TopicSpec("t", 1)], 1, timeout=5)
    assert topics.max_bytes == {"t": 4096}
    assert topics.delete_retention == {"t": 60.0}
    assert fake_admin.calls == 2


async def test_no_permission_to_read_configs_falls_back_to_the_defaults_and_says_so(
    fake_admin: type[_Admin], caplog: pytest.LogCaptureFixture,
) -> None:
    fake_admin.script = [_answer("t", TOPIC_AUTHORIZATION_FAILED)]
    with caplog.at_level(logging.WARNING, logger=admin_module.__name__):
        topics = await ensure_topics("b:9092", [TopicSpec("t", 1)], 1, timeout=5)
    assert topics.max_bytes == {"t": admin_module.DEFAULT_MAX_MESSAGE_BYTES}
    assert fake_admin.calls == 1
    assert "cannot read the configs of topic 't'" in caplog.text
