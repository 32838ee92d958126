"""One commit interval: everything it owns, in one object replaced at commit and abort.

The open interval collects output batches, single sends (dead letters, topics eoflow
does not know), the offsets the barrier takes from the dispatcher, the changelog batches
of the flush, and the first failure of a send. Nothing of it survives the interval: the
next one starts from a new :class:`Interval` (in ``careful`` mode after a failed batch
with records of several events, so the retry can find the event to blame).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from eoflow._transport.base import SendFuture, TopicPartition
from eoflow._transport.batching import OutputBatches

from .lifecycle import IntervalState, Lifecycle
from .poison import Origin
from .tables import Flushed

__all__ = ["Interval"]

_ACCEPTING = frozenset({IntervalState.IDLE, IntervalState.OPEN})


@dataclass(eq=False)
class Interval:
    """The state of one interval (one Kafka transaction in exactly-once mode)."""

    batches: OutputBatches
    #: Send record by record: a batch with records of several events failed last time.
    careful: bool = False
    started: float = field(default_factory=time.monotonic)
    state: Lifecycle[IntervalState] = field(default_factory=Lifecycle.interval)
    #: Sends outside the batches (dead letters, undeclared topics) and the event of each.
    sends: list[tuple[SendFuture, Origin | None]] = field(default_factory=list)
    #: Next offset per input partition, taken from the dispatcher at the barrier.
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    #: The changelog batches sent by the flush (commit step 2).
    flushed: list[Flushed] = field(default_factory=list)
    _failure: BaseException | None = None

    @property
    def is_open(self) -> bool:
        return self.state.state is IntervalState.OPEN

    @property
    def accepts(self) -> bool:
        """Whether it takes events: open, or idle (its records wait in held batches until
        its transaction begins)."""
        return self.state.state in _ACCEPTING

    @property
    def failure(self) -> BaseException | None:
        """The first send of this interval that failed after touching it, if any.

        Its record (or a whole batch of records of earlier events) is not in the
        transaction: the interval must abort, whatever the agent did with the error.
        """
        return self._failure or self.batches.failure

    def poison(self, error: BaseException) -> None:
        """A send failed in a way that may have lost records of this interval."""
        if self._failure is None:
            self._failure = error

    def produced(self) -> dict[str, int]:
        """Records sent per topic (after every send succeeded: the commit's count)."""
        counts: dict[str, int] = {}
        for batch in self.batches.sent:
            counts[batch.topic] = counts.get(batch.topic, 0) + len(batch.sources)
        for fut, _ in self.sends:
            topic = str(fut.result().topic)
            counts[topic] = counts.get(topic, 0) + 1
        return counts

    @property
    def age(self) -> float:
        return time.monotonic() - self.started
