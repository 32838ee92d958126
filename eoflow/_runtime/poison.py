"""Poison bookkeeping: how often each event made its agent fail, across aborts and rebalances.

An event that keeps failing is dead-lettered after ``max_retries`` tries. The count lives
here, keyed by :class:`PoisonKey`, until the event's offset is committed (by this worker).
It is kept when the event's partition is revoked: if the partition comes back, the event
does not get ``max_retries`` fresh tries per rebalance. It is not shared between workers;
a partition that moves to another worker starts its counts there from zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from eoflow._stream import Event
from eoflow._transport.base import TopicPartition

__all__ = ["Origin", "PoisonKey", "PoisonLedger"]

log = logging.getLogger(__name__)

#: Entries kept at most; the oldest go first (an event whose partition never came back).
MAX_ENTRIES = 10_000


class PoisonKey(NamedTuple):
    """An event of one agent: ``(agent, topic, partition, offset)``."""

    agent: str
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, agent: str, event: Event[Any, Any]) -> PoisonKey:
        return cls(agent, event.topic, event.partition, event.offset)

    def describe(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset} in agent {self.agent}"


#: The event a send came from, ``(agent, event)``, as a send records it: the
#: :class:`PoisonKey` is made of it (``PoisonKey.of(*origin)``) only when the send fails.
#: A plain tuple costs a fraction of a key, and there is one per record sent.
Origin = tuple[str, Event[Any, Any]]


class PoisonLedger:
    """Failure counts and last errors per event."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self._tries: dict[PoisonKey, int] = {}
        self._errors: dict[PoisonKey, str] = {}
        #: Failures counted against a record so far: an abort that adds one brings that
        #: record closer to the dead-letter topic, so it is progress.
        self.blamed = 0

    def __bool__(self) -> bool:
        return bool(self._tries)

    def __len__(self) -> int:
        return len(self._tries)

    def failed(self, key: PoisonKey, error: BaseException) -> int:
        """Count one failure of ``key``; returns the number of tries so far."""
        tries = self._tries.pop(key, 0) + 1  # re-inserted: the dict stays in age order
        self._tries[key] = tries
        self.blamed += 1
        self._errors[key] = f"{type(error).__name__}: {error}"
        while len(self._tries) > MAX_ENTRIES:
            oldest = next(iter(self._tries))
            self.forget(oldest)
        log.warning("%s failed (try %d of %d): %r", key.describe(), tries, self.max_retries,
                    error)
        return tries

    def tries(self, key: PoisonKey) -> int:
        return self._tries.get(key, 0)

    def exhausted(self, key: PoisonKey) -> bool:
        """Whether ``key`` has failed ``max_retries`` times: dead-letter it."""
        return self._tries.get(key, 0) >= self.max_retries

    def last_error(self, key: PoisonKey) -> str | None:
        return self._errors.get(key)

    def forget(self, key: PoisonKey) -> None:
        self._tries.pop(key, None)
        self._errors.pop(key, None)

    def forget_committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Drop the counts of events a commit moved past (``partition -> next offset``)."""
        if not self._tries:
            return
        for key in [k for k in self._tries
                    if k.offset < offsets.get(TopicPartition(k.topic, k.partition), -1)]:
            self.forget(key)
