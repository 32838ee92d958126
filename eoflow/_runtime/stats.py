"""What the worker counts for its metrics, in plain ints, updated once per commit.

The hot path does not touch Prometheus: the dispatcher counts records per partition in a
dict it already keeps per interval, and the commit adds the interval's counts here. The
web layer (``eoflow._web.metrics``) reads these numbers when ``/metrics`` is scraped, so
an unscraped worker pays one dict update per record and a few per commit.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eoflow._transport.base import TopicPartition

__all__ = ["COMMIT_BUCKETS", "INTERVAL_BUCKETS", "Buckets", "WorkerStats"]

#: Commit latency buckets, in seconds.
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Records per committed interval.
INTERVAL_BUCKETS = (1, 10, 100, 1000, 10_000, 100_000)


class Buckets:
    """A cumulative histogram in plain numbers (Prometheus' ``le`` buckets)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count of observations <= le)]`` ending with ``+Inf``."""
        out, total = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass
class WorkerStats:
    """Totals of the committed intervals (aborted ones are processed again, not counted)."""

    records_in: dict[str, int] = field(default_factory=dict)
    records_out: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    commit_seconds: Buckets = field(default_factory=lambda: Buckets(COMMIT_BUCKETS))
    interval_records: Buckets = field(default_factory=lambda: Buckets(INTERVAL_BUCKETS))
    #: Wall-clock time of the last commit, None before the first.
    last_commit: float | None = None

    def committed(self, consumed: Mapping[TopicPartition, int], produced: Mapping[str, int],
                  dlq_topic: str, seconds: float) -> None:
        """An interval committed: records ``consumed`` per partition and ``produced`` per
        topic, in ``seconds`` from the barrier to the resume."""
        total = 0
        for tp, n in consumed.items():
            self.records_in[tp.topic] = self.records_in.get(tp.topic, 0) + n
            total += n
        for topic, n in produced.items():
            self.records_out[topic] = self.records_out.get(topic, 0) + n
        self.dead_letters += produced.get(dlq_topic, 0)
        self.commit_seconds.observe(seconds)
        self.interval_records.observe(total)
        self.last_commit = time.time()
