"""Global tables: every worker reads every partition, from a view of the committed changelog.

A :class:`GlobalView` holds all of a global table's committed contents in memory. At start
it reads each changelog partition ``read_committed`` until nothing more is readable (the
LSO at that moment); dispatch waits for that. Then it keeps reading in the background, so
reads see later commits of every worker a little later. Reads are of *committed* state
only, at some point in time: never a write of an interval that may still abort, and not
necessarily the newest commit. Writes go through the ordinary table path (the event's
partition overlay, its changelog, the transaction), so they are exactly once; a worker
reads its own uncommitted writes to the event's partition (read-your-writes) and sees the
others once they commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from eoflow._state.restore import ChangelogReader
from eoflow.errors import EoflowError

if TYPE_CHECKING:
    from .tables import ReaderFactory

__all__ = ["GlobalView"]

log = logging.getLogger(__name__)

#: Pause between background passes over a table's changelog partitions when idle.
POLL_INTERVAL = 0.05


class GlobalView:
    """The committed contents of one global table, kept current in the background."""

    def __init__(self, name: str, topic: str, partitions: int, reader: ReaderFactory) -> None:
        self.name = name
        self._topic = topic
        self._partitions = partitions
        self._reader = reader
        self._data: dict[bytes, bytes] = {}
        self._positions: dict[int, int] = {}
        self.ready = asyncio.Event()
        #: Records applied so far (all partitions).
        self.applied = 0

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self._data.items()))

    def __len__(self) -> int:
        return len(self._data)

    async def run(self) -> None:
        """Catch up once (then :attr:`ready`), then follow the changelog for ever."""
        delay = 0.2
        while True:
            try:
                async with self._reader() as reader:
                    while True:
                        moved = await self._pass(reader)
                        self.ready.set()
                        if not moved:
                            await asyncio.sleep(POLL_INTERVAL)
                        delay = 0.2
            except EoflowError as exc:  # the broker away: keep what we have, try again
                log.warning("global table %r: reading its changelog failed (%s); "
                            "retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _pass(self, reader: ChangelogReader) -> bool:
        """Read every partition up to its high watermark, or until nothing more is readable
        (an open transaction holds it back); whether anything moved."""
        moved = False
        for partition in range(self._partitions):
            start, end = await reader.bounds(self._topic, partition)
            position = max(self._positions.get(partition, start), start)
            await reader.seek(self._topic, partition, position)
            while position < end:
                records, new_position = await reader.read(self._topic, partition, 10_000, 0.05)
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        self._data.pop(record.key, None)
                    else:
                        self._data[record.key] = record.value
                self.applied += len(records)
                if new_position == position and not records:
                    break
                moved = True
                position = new_position
            self._positions[partition] = position
        return moved

