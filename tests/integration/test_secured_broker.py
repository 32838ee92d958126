"""eoflow on a SASL_SSL broker (SCRAM users, TLS, ACLs on): an app configured once with
``broker_credentials`` runs exactly once, and each mistake an operator makes fails at
start with a message that says which (issue 14.1, 14.8).

Runs on the session's ``kafka_sasl_broker`` (``admin`` is a super user; ``alice`` and
``bob`` have only the ACLs a test grants).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

import eoflow
from eoflow.errors import ConfigurationError
from eoflow.testing import create_topics, produce, read_changelog, read_committed, running
from tools.kafka.kafkactl import KafkaBroker

pytestmark = pytest.mark.timeout(180)


def _credentials(broker: KafkaBroker, user: str = "admin", password: str | None = None,
                 mechanism: str = "SCRAM-SHA-512") -> eoflow.SASLCredentials:
    return eoflow.SASLCredentials(user, broker.users[user] if password is None else password,
                                  mechanism, ssl=eoflow.SSLCredentials(cafile=str(broker.ca_file)))


def _counting_app(broker: KafkaBroker, credentials: Any) -> tuple[eoflow.App, str]:
    uid = f"sec-{uuid.uuid4().hex[:8]}"
    app = eoflow.App(uid, broker=f"kafka://{broker.bootstrap}", broker_credentials=credentials,
                     datadir=f"/tmp/eoflow-test-{uid}", session_timeout=6.0)
    words = app.topic(f"{uid}-words", partitions=2, key_serializer="str")
    out = app.topic(f"{uid}-out", partitions=2, key_serializer="str")
    counts = app.Table("counts", default=int, partitions=2)

    @app.agent(words)
    async def count(stream: eoflow.Stream[str, Any]) -> None:
        async for word, _ in stream.items():
            counts[word] += 1
            await out.send(key=word, value=counts[word])

    return app, uid


def _admin(broker: KafkaBroker) -> dict[str, Any]:
    return eoflow.App("x", broker_credentials=_credentials(broker)).settings.client_options


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
async def test_an_app_runs_exactly_once_over_sasl_ssl(kafka_sasl_broker: KafkaBroker,
                                                      mechanism: str) -> None:
    broker, options = kafka_sasl_broker, _admin(kafka_sasl_broker)
    app, uid = _counting_app(broker, _credentials(broker, "admin", mechanism=mechanism))
    words = [f"w{i % 7}" for i in range(140)]
    async with running(app):
        await produce(broker.bootstrap, f"{uid}-words",
                      [(w.encode(), b"{}") for w in words], client_options=options)
        for _ in range(300):
            outputs = await read_committed(broker.bootstrap, f"{uid}-out",
                                           client_options=options)
            if len(outputs) >= len(words):
                break
            await asyncio.sleep(0.2)
    per_key: dict[str, list[int]] = {}
    for r in outputs:
        per_key.setdefault(r.key.decode(), []).append(json.loads(r.value))
    assert per_key == {w: list(range(1, 21)) for w in sorted(set(words))}
    table = await read_changelog(broker.bootstrap, f"{uid}-counts-changelog",
                                 client_options=options)
    assert {json.loads(k): json.loads(v) for k, v in table.items()} == \
        {w: 20 for w in set(words)}


async def test_a_wrong_password_fails_at_start_naming_the_user(
        kafka_sasl_broker: KafkaBroker) -> None:
    app, _ = _counting_app(kafka_sasl_broker,
                           _credentials(kafka_sasl_broker, "alice", password="wrong"))
    with pytest.raises(ConfigurationError, match="refused SASL_SSL SCRAM-SHA-512 as 'alice'"):
        async with running(app, ready_timeout=60):
            pass


async def test_a_broker_certificate_from_an_unknown_ca_fails_at_start(
        kafka_sasl_broker: KafkaBroker) -> None:
    credentials = eoflow.SASLCredentials("admin", kafka_sasl_broker.users["admin"],
                                         ssl=eoflow.SSLCredentials())  # the system's CAs
    app, _ = _counting_app(kafka_sasl_broker, credentials)
    with pytest.raises(ConfigurationError, match=r"certificate is not trusted.*cafile"):
        async with running(app, ready_timeout=60):
            pass


async def test_a_principal_that_may_not_write_the_output_stops_and_commits_nothing(
        kafka_sasl_broker: KafkaBroker) -> None:
    broker, options = kafka_sasl_broker, _admin(kafka_sasl_broker)
    app, uid = _counting_app(broker, _credentials(broker, "bob"))
    await create_topics(broker.bootstrap, {f"{uid}-words": 2, f"{uid}-out": 2},
                        client_options=options)
    await asyncio.to_thread(broker.add_acl, "bob", "All", prefixed=True, topic=uid, group=uid,
                            transactional_id=uid)  # one run of kafka-acls, not three
    await asyncio.to_thread(broker.add_acl, "bob", "Write", topic=f"{uid}-out", deny=True)
    await produce(broker.bootstrap, f"{uid}-words", [(b"w", b"{}")] * 5, client_options=options)
    with pytest.raises(ConfigurationError, match=f"not authorized.*{uid}-out"):
        async with running(app, ready_timeout=60):
            await asyncio.sleep(30)  # the worker stops on its first output
    assert await read_committed(broker.bootstrap, f"{uid}-out", client_options=options) == []
    assert await read_changelog(broker.bootstrap, f"{uid}-counts-changelog",
                                client_options=options) == {}
