"""aiokafka's exceptions translated into :mod:`eoflow.errors`: here and nowhere else.

Every module of ``eoflow._transport`` that calls aiokafka wraps the call with
:func:`translate` (or :func:`translating`), so the runtime only ever sees eoflow errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiokafka import errors as kerr

from eoflow.errors import (
    ConfigurationError,
    EoflowError,
    ProducerFencedError,
    RecordRejectedError,
    TransactionAbortedError,
    TransportError,
)

__all__ = ["RETRIABLE_GROUP_ERRORS", "translate", "translating"]

# FENCED_INSTANCE_ID (82) has no aiokafka 0.14 class (``for_code(82)`` is UnknownError), so
# it cannot be told apart here; producer.py reads the code from the TxnOffsetCommit
# response itself and raises InstanceFencedError there.

#: Group coordinator errors that say "not now": retry after a backoff (KIP-447 errors
#: included: UNSTABLE_OFFSET_COMMIT while a transaction holds offsets).
RETRIABLE_GROUP_ERRORS: tuple[type[BaseException], ...] = (
    kerr.GroupCoordinatorNotAvailableError,
    kerr.NotCoordinatorForGroupError,
    kerr.GroupLoadInProgressError,
    kerr.RequestTimedOutError,
    kerr.KafkaConnectionError,
    kerr.NodeNotReadyError,
    kerr.KafkaTimeoutError,
)


_AUTHORIZATION_ERRORS: tuple[type[BaseException], ...] = (
    kerr.TopicAuthorizationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.TransactionalIdAuthorizationFailed,
)


def translate(exc: BaseException, what: str) -> Exception:
    """Map an exception raised while doing ``what`` to an eoflow error."""
    if isinstance(exc, EoflowError):
        return exc
    if isinstance(exc, kerr.ProducerFenced | kerr.InvalidProducerEpoch):
        return ProducerFencedError(
            f"{what}: the producer was fenced (a newer producer with the same transactional "
            "id started, or the broker aborted a transaction that outlived "
            "transaction_timeout)")
    if isinstance(exc, _AUTHORIZATION_ERRORS):
        return ConfigurationError(
            f"{what}: not authorized ({type(exc).__name__}: {exc}): the principal this worker "
            "connects as lacks an ACL (WRITE/DESCRIBE on the topic, READ on the group, WRITE "
            "on the transactional id, or IDEMPOTENT_WRITE on the cluster); grant it and "
            "restart. Nothing of the interval was committed.")
    if isinstance(exc, AssertionError) and "partition" in str(exc).lower():
        return RecordRejectedError(f"{what}: {exc} (the topic has no such partition)")
    if isinstance(exc, RETRIABLE_GROUP_ERRORS):
        return TransportError(f"{what}: {type(exc).__name__} ({exc}); retrying")
    if isinstance(exc, kerr.IllegalOperation):  # not a KafkaError in aiokafka 0.14
        return TransactionAbortedError(
            f"{what}: the producer is not in a transaction ({exc}): its transaction failed "
            "or it was fenced; the interval is aborted")
    if isinstance(exc, kerr.KafkaError | OSError | asyncio.TimeoutError):
        return TransactionAbortedError(f"{what}: {exc!r}")
    return exc if isinstance(exc, Exception) else TransportError(f"{what}: {exc!r}")


@contextlib.contextmanager
def translating(what: str) -> Iterator[None]:
    """``with translating("fetching"): ...`` re-raises foreign errors as eoflow errors."""
    try:
        yield
    except EoflowError:
        raise
    except Exception as exc:
        raise translate(exc, what) from exc
