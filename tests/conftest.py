"""Shared fixtures: one real Kafka broker per test session, started only when needed.

* ``kafka_broker`` (session): a :class:`tools.kafka.kafkactl.KafkaBroker` on a free port with
  its data under the pytest tmp dir; started lazily the first time a test asks for it and
  stopped at the end of the session (also after failures / Ctrl-C). With
  ``EOFLOW_TEST_BOOTSTRAP=host:port`` an existing broker is used instead; then
  ``stop``/``start``/``restart`` skip the calling test.
* ``kafka_bootstrap`` (session): the bootstrap address string.
* ``kafka_cluster`` (session, opt-in): a :class:`tools.kafka.kafkactl.KafkaCluster` of three
  broker+controller nodes (topics and internal topics RF 3, min.insync.replicas 2), same
  Kafka version as ``kafka_broker``. A test that kills or stops a node restarts it and waits
  for ``cluster.wait_in_sync()`` before it returns, so the next test finds three nodes.
* ``kafka_sasl_broker`` (session, opt-in): a SASL_SSL broker (SCRAM-SHA-256/512 and PLAIN,
  TLS with a CA made for the session) with the StandardAuthorizer on. ``admin`` is a super
  user (``broker.client_config()`` connects as admin); ``alice`` and ``bob`` get only what
  ``broker.add_acl(...)`` grants. Clients: ``AIOKafkaProducer(**broker.client_config(user))``.
* ``topic_factory`` (function): ``topic_factory(partitions=1, *, name=None, config=None)``
  creates a uniquely named topic and returns its name; the topics are deleted afterwards.
  It is a plain (blocking) callable, so it works in sync and async tests alike.

Tests under ``tests/integration`` and ``tests/e2e`` are marked ``integration`` / ``e2e``
automatically, so ``pytest -m "not integration and not e2e"`` runs with no broker and no Java.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

from eoflow.testing import create_topics, delete_topics

if TYPE_CHECKING:
    from tools.kafka.kafkactl import KafkaBroker, KafkaCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

T = TypeVar("T")


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def start(self, timeout: float = 60.0) -> Any: ...
    def stop(self) -> None: ...
    def restart(self, timeout: float = 60.0) -> Any: ...
    def is_running(self) -> bool: ...


class ExternalBroker:
    """A broker we did not start (EOFLOW_TEST_BOOTSTRAP): it cannot be stopped or restarted."""

    pid: int | None = None

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def _unsupported(self) -> None:
        pytest.skip("EOFLOW_TEST_BOOTSTRAP is set: an external broker cannot be stopped/restarted")

    def start(self, timeout: float = 60.0) -> ExternalBroker:
        self._unsupported()
        return self

    def stop(self) -> None:
        self._unsupported()

    def restart(self, timeout: float = 60.0) -> ExternalBroker:
        self._unsupported()
        return self

    def is_running(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"ExternalBroker({self._bootstrap!r})"


# ----------------------------------------------------------------------------- markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(tests_dir)
        except ValueError:
            continue
        top = rel.parts[0] if rel.parts else ""
        if top == "integration":
            item.add_marker(pytest.mark.integration)
        elif top == "e2e":
            item.add_marker(pytest.mark.e2e)


# ----------------------------------------------------------------------------- broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = os.environ.get("EOFLOW_TEST_BOOTSTRAP")
    if external:
        yield ExternalBroker(external)
        return

    from tools.kafka.kafkactl import KafkaBroker

    broker = KafkaBroker(datadir=tmp_path_factory.mktemp("kafka"))
    try:
        broker.start(timeout=float(os.environ.get("EOFLOW_KAFKA_START_TIMEOUT", "120")))
        yield broker
    finally:
        broker.stop()


def _start_timeout(factor: float = 1.0) -> float:
    return factor * float(os.environ.get("EOFLOW_KAFKA_START_TIMEOUT", "120"))


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    from tools.kafka.kafkactl import KafkaCluster

    cluster = KafkaCluster(brokers=3, datadir=tmp_path_factory.mktemp("kafka-cluster"),
                           heap="384m")  # fmt: skip
    try:
        cluster.start(timeout=_start_timeout(2))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka_sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    from tools.kafka.kafkactl import KafkaBroker

    broker = KafkaBroker(datadir=tmp_path_factory.mktemp("kafka-sasl"), heap="384m",
                         security="sasl_ssl", authorizer=True)  # fmt: skip
    try:
        broker.start(timeout=_start_timeout())
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap


# ----------------------------------------------------------------------------- topics


def run_sync(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a private thread+loop (safe inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_factory())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name="eoflow-test-admin", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    created: list[str] = []
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-.") or "t"

    def make(
        partitions: int = 1, *, name: str | None = None, config: dict[str, str] | None = None
    ) -> str:
        topic = f"{name or base}-{uuid.uuid4().hex[:8]}"
        run_sync(lambda: create_topics(kafka_bootstrap, {topic: partitions},
                                       {topic: config} if config else None))
        created.append(topic)
        return topic

    yield make

    if created:
        try:
            run_sync(lambda: delete_topics(kafka_bootstrap, created))
        except Exception as exc:  # broker may have been stopped by the test; not a failure
            print(f"(topic cleanup skipped: {exc!r})", file=sys.stderr)
