"""When a broker is usable, and waiting for it.

Usable means what eoflow needs first: a transactional producer can initialise and commit
(the transaction coordinator and ``__transaction_state`` are loaded) and the group
coordinator answers (``__consumer_offsets`` exists), so the first consumer group of a test
does not see COORDINATOR_NOT_AVAILABLE. Checked with aiokafka when it is installed; without
it (the CLI under a bare python3) an accepted TCP connection has to do.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tools.kafka._errors import KafkaError


class Watched(Protocol):
    """What :func:`wait_until` needs of a broker: did its JVM die, and its log."""

    def raise_if_exited(self) -> None: ...
    def log_tail(self, lines: int = 40) -> str: ...


def wait_until(
    check: Callable[[float], str | None], deadline: float, watched: Sequence[Watched], what: str
) -> None:
    """Call ``check(timeout)`` until it returns None (ready; otherwise it says why not).

    Raises :class:`KafkaError` with the brokers' log tails when one of their JVMs exits or
    when ``deadline`` (``time.monotonic()``) passes.
    """
    last = "not checked yet"
    while True:
        for w in watched:
            w.raise_if_exited()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tails = "\n".join(w.log_tail(20) for w in watched)
            raise KafkaError(f"{what} not ready in time: {last}\n{tails}")
        err = check(min(remaining, 30.0))
        if err is None:
            return
        last = err
        time.sleep(0.3)


def probe(bootstrap: str, timeout: float, client: dict[str, Any] | None = None) -> str | None:
    """None if a transactional producer can commit and the group coordinator answers, else
    why not. ``client``: more aiokafka settings (security).

    Runs in a thread with its own event loop, so it works from inside a running loop too.
    """
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        return None  # the caller saw the port accept a connection
    result: list[str | None] = ["probe did not finish"]
    settings = {k: v for k, v in (client or {}).items() if k != "bootstrap_servers"}

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(_txn_probe(bootstrap, settings), timeout))
            result[0] = None
        except BaseException as exc:  # reported; the caller retries
            result[0] = f"{type(exc).__name__}: {exc}"

    t = threading.Thread(target=run, name="kafka-ready-probe", daemon=True)
    t.start()
    t.join(timeout + 5)
    return result[0]


async def _txn_probe(bootstrap: str, client: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"eoflow-ready-probe-{uuid.uuid4().hex[:8]}",
        request_timeout_ms=10000,
        **client,
    )
    await producer.start()
    try:
        await producer.begin_transaction()  # waits for InitProducerId
        await producer.commit_transaction()
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **client)
    await admin.start()
    try:
        await admin.find_coordinator("eoflow-ready-probe")
    finally:
        await admin.close()
