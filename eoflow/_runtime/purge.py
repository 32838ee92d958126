"""Deleting what the repartition topics no longer need.

eoflow's repartition topics keep records until eoflow deletes them (``retention.ms=-1``,
:data:`eoflow._runtime.topology.REPARTITION_CONFIG`): a record there carries the
timestamp of the event it came from, and time-based retention would delete a backfill of
old events before the repartitioned agent read it.

Every ``repartition_purge_interval`` seconds a worker deletes, in the repartition
partitions it owns, the records before the group's committed offset. Nothing before a
committed offset is read again: a worker that takes the partition over starts at that
offset, and one that lost it (a zombie) is fenced before it could commit a read of them.
Deleting is an optimisation of disk use, never a step of the commit: a failure is logged
and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping

from eoflow._transport.base import TopicPartition
from eoflow.errors import TransportError

__all__ = ["RepartitionPurger"]

log = logging.getLogger(__name__)


class RepartitionPurger:
    """Deletes the committed records of ``topics``' partitions every ``interval``."""

    def __init__(self, topics: Collection[str],
                 committed: Callable[[], Mapping[TopicPartition, int]],
                 delete: Callable[[Mapping[TopicPartition, int]], Awaitable[None]],
                 interval: float) -> None:
        self._topics = frozenset(topics)
        self._committed = committed
        self._delete = delete
        self._interval = interval
        #: The offset each partition's records were last deleted before.
        self.purged: dict[TopicPartition, int] = {}

    async def run(self) -> None:
        """Purge every interval until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.purge()

    async def purge(self) -> None:
        """Delete the records before each owned repartition partition's committed offset,
        where that offset moved since the last purge."""
        due = {tp: offset for tp, offset in dict(self._committed()).items()
               if tp.topic in self._topics and offset > self.purged.get(tp, 0)}
        if not due:
            return
        try:
            await self._delete(due)
        except TransportError as exc:
            log.warning("could not delete consumed records of repartition topics (%s); "
                        "trying again in %.0fs", exc, self._interval)
            return
        self.purged.update(due)
