"""aiokafka errors become eoflow errors at the transport boundary."""

from __future__ import annotations

from aiokafka import errors as kerr

from eoflow._transport.errors import translate
from eoflow.errors import (
    InstanceFencedError,
    ProducerFencedError,
    TransactionAbortedError,
    TransportError,
)


def test_an_error_code_aiokafka_does_not_know_still_translates() -> None:
    # FENCED_INSTANCE_ID (82) reaches us as UnknownError; translating it must not crash.
    err = translate(kerr.for_code(82)("heartbeat"), "heartbeat")
    assert isinstance(err, TransactionAbortedError)
    assert "heartbeat" in str(err)


def test_producer_fenced_is_fatal_for_this_producer() -> None:
    err = translate(kerr.ProducerFenced(), "commit")
    assert isinstance(err, ProducerFencedError)
    assert not isinstance(err, InstanceFencedError)


def test_coordinator_not_available_is_retriable() -> None:
    err = translate(kerr.GroupCoordinatorNotAvailableError(), "fetching stable offsets")
    assert type(err) is TransportError
    assert "fetching stable offsets" in str(err)


def test_other_kafka_errors_abort_the_interval() -> None:
    err = translate(kerr.CorruptRecordException(), "flush")
    assert isinstance(err, TransactionAbortedError)


def test_a_send_after_the_producer_left_its_transaction_aborts_the_interval() -> None:
    # aiokafka raises IllegalOperation (not a KafkaError) once a fenced producer's
    # transaction has failed; it used to escape untranslated and stop the worker.
    err = translate(kerr.IllegalOperation("Can't send messages while not in transaction"),
                    "send batch to out[0]")
    assert isinstance(err, TransactionAbortedError)
    assert "out[0]" in str(err)


async def test_not_in_transaction_reports_what_ended_the_transaction() -> None:
    # A missing WRITE ACL fails AddPartitionsToTxn; aiokafka then answers every send with
    # "not in transaction". The worker must see the authorization error (and stop), not
    # a retriable abort it would repeat for ever.
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from eoflow._transport.producer import TransactionalProducer
    from eoflow.errors import ConfigurationError

    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiter.set_exception(kerr.TopicAuthorizationFailedError("out"))

    async def send_batch(*args: Any, **kwargs: Any) -> None:
        raise kerr.IllegalOperation("Can't send messages while not in transaction")

    producer = TransactionalProducer("127.0.0.1:1", "t", transaction_timeout_ms=1000,
                                     client_id="c")
    producer._producer = SimpleNamespace(  # type: ignore[assignment]
        send_batch=send_batch, _txn_manager=SimpleNamespace(_transaction_waiter=waiter))
    batch = SimpleNamespace(record_count=lambda: 1, close=lambda: None)
    try:
        await producer.submit_batch(batch, "out", 0)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        assert "not authorized" in str(exc) and "out[0]" in str(exc)
    else:
        raise AssertionError("no error")
