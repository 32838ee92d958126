"""Prometheus metrics of one worker, read from the runtime when ``/metrics`` is scraped.

Each worker has its own ``CollectorRegistry`` (never the process-wide default), so several
workers or apps in one process — tests do that — do not collide. Nothing here runs on the
processing path: the runtime keeps plain counters (``_runtime.stats.WorkerStats``, the
committer's and rebalance handler's counts, the table manager's restore progress), and
:class:`WorkerCollector` turns them into metric families at scrape time.

Metric names are listed in ``docs/operations.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from eoflow._runtime.stats import Buckets
from eoflow._transport.base import TopicPartition

if TYPE_CHECKING:
    from eoflow._runtime.worker import Worker

__all__ = ["WorkerCollector", "lag", "new_registry", "render"]


def new_registry(worker: Worker) -> CollectorRegistry:
    """A registry of this worker's metrics only."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (``/metrics``)."""
    return generate_latest(registry)


def lag(worker: Worker) -> dict[TopicPartition, int]:
    """Records per assigned partition not yet processed and committed.

    ``end - committed``, where the end is the last stable offset of the last fetch. A
    committed offset can sit below the end by transaction markers alone (every transaction
    on an input topic ends with one): when everything fetched is committed, the consumer's
    position, which has stepped over the markers, counts instead.
    """
    consumer, committer, dispatcher = worker.consumer, worker.committer, worker.dispatcher
    if consumer is None or committer is None or dispatcher is None:
        return {}
    found: dict[TopicPartition, int] = {}
    for tp, (position, end) in consumer.progress().items():
        committed = committer.committed.get(tp, -1)
        fetched = dispatcher.fetched_to.get(tp)
        if end is None or (committed < 0 and position is None):
            continue
        done = committed
        if position is not None and (fetched is None or committed >= fetched):
            done = max(committed, position)
        found[tp] = max(end - done, 0)
    return found


class WorkerCollector(Collector):
    """Reads a worker's counters at scrape time."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        worker = self._worker
        yield from self._flow(worker)
        yield from self._cycle(worker)
        yield from self._partitions(worker)
        yield from self._tables(worker)

    @staticmethod
    def _flow(worker: Worker) -> Iterator[Metric]:
        stats = worker.stats
        records_in = CounterMetricFamily(
            "eoflow_records_in", "Records consumed in committed intervals", labels=["topic"])
        for topic, n in sorted(stats.records_in.items()):
            records_in.add_metric([topic], n)
        records_out = CounterMetricFamily(
            "eoflow_records_out", "Records produced in committed intervals", labels=["topic"])
        for topic, n in sorted(stats.records_out.items()):
            records_out.add_metric([topic], n)
        yield records_in
        yield records_out
        yield CounterMetricFamily("eoflow_dead_letters",
                                  "Records sent to the dead-letter topic (committed)",
                                  value=stats.dead_letters)

    @staticmethod
    def _cycle(worker: Worker) -> Iterator[Metric]:
        committer, rebalance, stats = worker.committer, worker.rebalance, worker.stats
        yield CounterMetricFamily("eoflow_commits", "Intervals committed",
                                  value=committer.commits if committer else 0)
        yield CounterMetricFamily("eoflow_aborts", "Intervals aborted",
                                  value=committer.aborts if committer else 0)
        yield CounterMetricFamily("eoflow_rebalances", "Partition assignments received",
                                  value=rebalance.rebalances if rebalance else 0)
        yield _histogram("eoflow_commit_seconds",
                         "Seconds from the commit barrier to the resume", stats.commit_seconds)
        yield _histogram("eoflow_interval_records", "Records consumed per committed interval",
                         stats.interval_records)
        if stats.last_commit is not None:
            yield GaugeMetricFamily("eoflow_last_commit_timestamp_seconds",
                                    "Wall-clock time of the last commit",
                                    value=stats.last_commit)
        yield GaugeMetricFamily("eoflow_ready", "1 when every assigned partition is "
                                "restored and processing", value=1 if is_ready(worker) else 0)

    @staticmethod
    def _partitions(worker: Worker) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("eoflow_consumer_lag", "Records not yet processed and "
                                  "committed, per assigned partition",
                                  labels=["topic", "partition"])
        for tp, n in sorted(lag(worker).items()):
            gauge.add_metric([tp.topic, str(tp.partition)], n)
        yield gauge
        committed = GaugeMetricFamily("eoflow_committed_offset", "Committed offset per "
                                      "assigned partition", labels=["topic", "partition"])
        if worker.committer is not None:
            for tp, offset in sorted(worker.committer.committed.items()):
                committed.add_metric([tp.topic, str(tp.partition)], offset)
        yield committed

    @staticmethod
    def _tables(worker: Worker) -> Iterator[Metric]:
        tables = worker.tables
        labels = ["table", "partition"]
        restored = CounterMetricFamily("eoflow_restore_records", "Changelog records "
                                       "restored per table partition", labels=labels)
        remaining = GaugeMetricFamily("eoflow_restore_remaining_records", "Changelog "
                                      "offsets left to restore per table partition",
                                      labels=labels)
        keys = GaugeMetricFamily("eoflow_table_keys", "Estimated keys in the committed "
                                 "store per table partition", labels=labels)
        if tables is not None:
            for (name, p), n in sorted(tables.restored.items()):
                restored.add_metric([name, str(p)], n)
            for (name, p), n in sorted(tables.remaining.items()):
                remaining.add_metric([name, str(p)], n)
            for (name, p), n in sorted(tables.sizes().items()):
                keys.add_metric([name, str(p)], n)
        yield restored
        yield remaining
        yield keys
        late = CounterMetricFamily("eoflow_late_events", "Events too late for every window "
                                   "of a windowed table (not applied; counted when "
                                   "processed, again if their interval aborts)",
                                   labels=["table"])
        for name, table in sorted(worker.app.tables.items()):
            if table.windowed is not None:
                late.add_metric([name], table.windowed.late)
        yield late


def is_ready(worker: Worker) -> bool:
    from eoflow._runtime.lifecycle import WorkerState

    rebalance = worker.rebalance
    return (worker.state.is_(WorkerState.RUNNING) and rebalance is not None
            and rebalance.settled)


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, documentation, buckets=buckets.cumulative(),
                                 sum_value=buckets.sum)
