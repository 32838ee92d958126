"""A cancelled or timed-out start of the transactional producer stays a cancellation.

Found by the cluster harness (issue 15): with two of three brokers down for 75 s, the
abort's "recreating the producer" step hit its 30 s limit and was logged as
``TransportError("starting producer ...: CancelledError()")``: ``start`` translated the
``CancelledError`` of ``asyncio.timeout`` into an eoflow error, so the timeout never became
a ``TimeoutError`` and a real cancellation (a worker stopping) would have been retried as
if it were a broker error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from eoflow._transport.producer import TransactionalProducer


@pytest.fixture
async def silent_broker() -> AsyncIterator[str]:
    """A port that accepts connections and never answers (a broker behind a black hole)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


def _producer(bootstrap: str) -> TransactionalProducer:
    return TransactionalProducer(bootstrap, "cancel-test", transaction_timeout_ms=10000,
                                 client_id="cancel-test")


async def test_a_timeout_around_start_raises_timeout_error(silent_broker: str) -> None:
    producer = _producer(silent_broker)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await producer.start()
    await producer.close()


async def test_cancelling_start_cancels(silent_broker: str) -> None:
    producer = _producer(silent_broker)
    task = asyncio.create_task(producer.start())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await producer.close()
