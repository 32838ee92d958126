"""Errors raised by eoflow.

Every error derives from :class:`EoflowError` and says whether retrying can help
(``retriable``). Errors from aiokafka and rocksdict are translated into these types at
the boundary where eoflow calls them, so user code never has to import either.

::

    EoflowError
    ├── ConfigurationError            fatal: fix the app or the command line
    │   ├── TopicMismatchError        a topic exists with another partition count
    │   ├── TableUsageError           a table used outside an event, or not co-partitioned
    │   └── OutsideEventError         a send from a task that outlived the event it was for
    ├── SerializationError            fatal for that record: it goes to the dead-letter topic
    │   └── RecordTooLargeError       an output or table value above the topic's limit
    ├── RecordRejectedError           fatal for that record: no such partition, for example
    ├── TransportError                retriable: broker or network trouble
    │   ├── TransactionAbortedError   the interval was aborted; it is retried
    │   ├── CommitFailedError         the group moved on (stale generation); rejoin
    │   └── ProducerFencedError       fatal: a newer instance owns the transactional id
    │       └── InstanceFencedError   fatal: a newer instance joined with this instance id
    ├── StateError
    │   ├── StoreMismatchError        fatal: the store belongs to another app/partitioning
    │   ├── StoreLockedError          fatal: another process has the store open
    │   ├── OffsetRegressionError     fatal: an apply would move the stored offset back (a bug)
    │   ├── StoreCorruptError         retriable: the store is rebuilt from its changelog
    │   └── RestoreError              retriable: reading the changelog failed
    ├── AgentError                    an agent raised; carries the event's coordinates
    └── LifecycleError                a bug: a state machine asked for an edge it lacks
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "CommitFailedError",
    "ConfigurationError",
    "EoflowError",
    "InstanceFencedError",
    "LifecycleError",
    "OffsetRegressionError",
    "OutsideEventError",
    "ProducerFencedError",
    "RecordRejectedError",
    "RecordTooLargeError",
    "RestoreError",
    "SerializationError",
    "StateError",
    "StoreCorruptError",
    "StoreLockedError",
    "StoreMismatchError",
    "TableUsageError",
    "TopicMismatchError",
    "TransactionAbortedError",
    "TransportError",
]


class EoflowError(Exception):
    """Root of every error eoflow raises."""

    #: Whether the operation may succeed when tried again.
    retriable: bool = False


class ConfigurationError(EoflowError):
    """The app, its topics or the command line are wrong; nothing will fix it but an edit."""


class TopicMismatchError(ConfigurationError):
    """A topic exists on the broker with another partition count than the app declares."""


class TableUsageError(ConfigurationError):
    """A table was used where eoflow cannot tell which partition the write belongs to."""


class OutsideEventError(ConfigurationError):
    """A send or table write came from a task that outlived the event it was spawned for.

    An event counts as processed when its agent takes the next one; its offset may commit
    at once. What a task spawned for it sends later cannot belong to its transaction, so
    eoflow refuses it and stops the worker instead of losing or duplicating it. Await such
    tasks inside the loop (``asyncio.gather``) before taking the next event.
    """


class SerializationError(EoflowError):
    """A key or value could not be encoded or decoded.

    The message names the topic, partition and offset of the record where known.
    """


class RecordTooLargeError(SerializationError):
    """A record is larger than its topic accepts (``max.message.bytes``).

    Raised by ``send`` or a table write inside the agent, so the event that made the
    record fails, is retried, and ends in the dead-letter topic.
    """


class RecordRejectedError(EoflowError):
    """A record cannot go where the agent sent it (a partition the topic does not have).

    Raised by ``send`` inside the agent, so the event that made it fails, is retried and
    ends in the dead-letter topic, like an event whose output is too large.
    """


class TransportError(EoflowError):
    """Talking to Kafka failed; the runtime retries after rewinding to committed offsets."""

    retriable = True


class TransactionAbortedError(TransportError):
    """The current transaction was aborted; its outputs and table writes are discarded."""


class CommitFailedError(TransportError):
    """The group coordinator refused the offsets (stale generation or unknown member)."""


class ProducerFencedError(TransportError):
    """Another producer with the same transactional id took over: this worker is a zombie."""

    retriable = False


class InstanceFencedError(ProducerFencedError):
    """Another worker joined the group with this worker's instance id (static membership)."""


class StateError(EoflowError):
    """A table store could not be opened, written or restored."""


class StoreMismatchError(StateError):
    """The local store belongs to another app, table or partition count."""


class StoreLockedError(StateError):
    """Another process (often a second worker on the same data directory) holds the store.

    The store is healthy, so it must not be wiped; stop the other process or give this
    worker its own data directory.
    """


class OffsetRegressionError(StateError):
    """An apply carried a changelog offset not above the stored one.

    The stored changelog offset only grows (invariant 4); a regression means the caller
    would apply the same or older changelog records twice. This is a bug, not a fault.
    """


class StoreCorruptError(StateError):
    """The local store cannot be read; it is rebuilt from its changelog."""

    retriable = True


class RestoreError(StateError):
    """Reading a changelog partition into its store failed."""

    retriable = True


class AgentError(EoflowError):
    """An agent raised while processing an event."""

    retriable = True


class LifecycleError(EoflowError):
    """A lifecycle was asked to move along an edge its table does not have (a bug)."""
