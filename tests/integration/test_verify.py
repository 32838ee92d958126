"""`eoflow verify` against the real broker: it passes an exactly-once app, finds a planted
bug, and refuses to judge an app that is not deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eoflow.cli import main

pytestmark = pytest.mark.timeout(240)


def run_verify(bootstrap: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["verify", "--broker", f"kafka://{bootstrap}",
                                     "--kills", "2", *args])


def test_the_wordcount_app_is_exactly_once(kafka_bootstrap: str) -> None:
    result = run_verify(kafka_bootstrap, "-A", "apps.wordcount",
                        "--inputs", "tests.integration.verify_apps:lines", "--records", "300",
                        "--rate", "100", "--session-timeout", "3", "--transaction-timeout", "10")
    assert result.exit_code == 0, result.output
    assert "exactly once: every output topic and table equals" in result.output
    assert "2 kill -9 (1 restarted on an empty data directory), 1 zombie" in result.output


def test_counting_in_a_dict_instead_of_a_table_is_caught(kafka_bootstrap: str) -> None:
    result = run_verify(kafka_bootstrap, "-A", "tests.integration.verify_apps:leaky",
                        "--inputs", "tests.integration.verify_apps:events", "--records", "600",
                        "--rate", "100", "--seed", "3")
    assert result.exit_code == 1, result.output
    assert "NOT EXACTLY ONCE" in result.output
    assert "topic counts key 'k" in result.output
    # each difference says where the runs part, with the inputs of its key
    assert "they part at #" in result.output
    assert "inputs with key 'k" in result.output


def test_an_app_that_is_not_deterministic_is_not_judged(kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    result = run_verify(kafka_bootstrap, "-A", "tests.integration.verify_apps:dice",
                        "--inputs", "tests.integration.verify_apps:events", "--records", "10")
    assert result.exit_code == 1, result.output
    assert "NOT DETERMINISTIC" in result.output


def test_windows_dead_letters_and_ignored_timer_topics_compare(kafka_bootstrap: str) -> None:
    result = run_verify(kafka_bootstrap, "-A", "tests.integration.verify_apps:windowed",
                        "--inputs", "tests.integration.verify_apps:orders", "--records", "400",
                        "--rate", "100", "--ignore", "ticks")
    assert result.exit_code == 0, result.output
    assert "exactly once" in result.output


async def test_the_chaos_topics_keep_the_2023_timestamps_of_the_inputs(
        kafka_bootstrap: str) -> None:
    """Inputs are stamped from INPUT_T0_MS (November 2023) and outputs inherit it: under
    Kafka's default 7-day retention, the broker's retention check (every 5 minutes) used to
    delete them in the middle of a run, and verify reported the app as not exactly once."""
    import uuid

    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from apps.wordcount import app
    from eoflow._verify import create_chaos_topics

    namespace = f"verify-{uuid.uuid4().hex[:8]}"
    await create_chaos_topics(app, kafka_bootstrap, namespace, {})
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        names = [f"{namespace}.{n}" for n in ("lines", "words", "word-counts")]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, {"retention.ms": None})
             for n in names])
        found = {r["resource_name"]: {e["config_names"]: e["config_value"]
                                      for e in r["config_entries"]}
                 for response in responses for r in response.to_object()["resources"]}
    finally:
        await admin.close()
    assert {n: found[n]["retention.ms"] for n in names} == dict.fromkeys(names, "-1")


async def test_the_comparison_waits_for_a_replaced_instance_s_open_transaction(
        kafka_bootstrap: str) -> None:
    """A worker killed and restarted on an empty data directory gets a new transactional
    id: its open transaction stays open until the broker's ``transaction_timeout``, and
    a read_committed reader sees nothing after its first record until then. The dead
    letters of the whole run sat behind one (CI, stop 21): verify read the dead-letter
    topic up to it, found none, and called the app not exactly once. Verify must wait for
    every topic it compares, not only the ones the workers consume."""
    import uuid

    from aiokafka import AIOKafkaProducer

    from eoflow._transport import kit
    from eoflow._verify import _drained, _snapshot, create_chaos_topics
    from tests.integration.verify_apps import windowed as app

    namespace = f"verify-{uuid.uuid4().hex[:8]}"
    await create_chaos_topics(app, kafka_bootstrap, namespace, {})
    dlq = f"{namespace}.{app.settings.dlq_topic}"
    await kit.create_topics(kafka_bootstrap, {dlq: 1})  # as a worker does
    replaced = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"{namespace}-w1")
    survivor = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"{namespace}-w2")
    await replaced.start()
    await survivor.start()
    try:
        await replaced.begin_transaction()
        await replaced.send_and_wait(dlq, b'{"id":49}', key=b"c1",
                                     headers=[("eoflow.topic", f"{namespace}.orders".encode())])
        async with survivor.transaction():
            await survivor.send_and_wait(dlq, b'{"id":149}', key=b"c1", headers=[
                ("eoflow.topic", f"{namespace}.orders".encode())])
        with pytest.raises(TimeoutError, match=r"dlq\[0\] \(open transaction\)"):
            await _drained(app, kafka_bootstrap, namespace, timeout=3)
        await replaced.abort_transaction()  # what the broker does after transaction_timeout
        await _drained(app, kafka_bootstrap, namespace, timeout=30)
        snapshot = await _snapshot(app, kafka_bootstrap, namespace)
    finally:
        await replaced.stop()
        await survivor.stop()
    assert snapshot["topic dead letters"] == {"orders": ["b'c1'=b'{\"id\":149}'"]}
