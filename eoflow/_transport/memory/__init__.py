"""An in-memory Kafka for tests without a broker: the same protocols as the Kafka transport.

``MemoryBroker`` holds topics, transactions and groups; ``MemoryTransport(broker)`` gives
one worker its producer, consumer, admin and changelog readers. See ``broker.py`` for
what is modelled.
"""

from .broker import MemoryBroker
from .clients import Killed, MemoryTransport
from .log import LogRecord, PartitionLog

__all__ = ["Killed", "LogRecord", "MemoryBroker", "MemoryTransport", "PartitionLog"]
