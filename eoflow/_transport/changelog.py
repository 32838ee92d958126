"""Reading changelog partitions for restore: the Kafka side of ``_state.restore``.

A :class:`KafkaChangelogReader` owns two assign-only consumers without a group: one
``read_committed`` that reads the records (invariant 6), and one ``read_uncommitted``
that is only asked for end offsets, which under ``read_uncommitted`` are the high
watermarks (``_state.restore`` explains why restore needs them, not the LSO).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from eoflow.errors import RestoreError

__all__ = ["KafkaChangelogReader"]


class KafkaChangelogReader:
    """Implements ``eoflow._state.restore.ChangelogReader``; use as an async context."""

    def __init__(self, bootstrap: str, client_options: dict[str, Any] | None = None,
                 consumer_options: dict[str, Any] | None = None) -> None:
        """``consumer_options`` (checked by ``options.check_consumer_options``) override
        the defaults of the reader that copies records."""
        options = dict(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                       **(client_options or {}))
        # A restore ends with a read at the end of the log, which has nothing to return:
        # the broker would hold that fetch for aiokafka's default 500 ms, once per
        # partition, even when the local store is current (8 partitions: 3.3 s of a 3.8 s
        # restart in bench/restore.py). A fetch with data returns at once either way.
        tunable = {"max_partition_fetch_bytes": 8 * 1024 * 1024, "fetch_max_wait_ms": 10,
                   **(consumer_options or {})}
        self._records = AIOKafkaConsumer(isolation_level="read_committed",
                                         auto_offset_reset="none", **tunable, **options)
        self._ends = AIOKafkaConsumer(isolation_level="read_uncommitted", **options)
        self._started = False

    async def __aenter__(self) -> KafkaChangelogReader:
        try:
            await self._records.start()
            await self._ends.start()
        except Exception as exc:
            await self.close()
            raise RestoreError(f"cannot connect to read changelogs: {exc!r}") from exc
        self._started = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for consumer in (self._records, self._ends):
            with contextlib.suppress(Exception):  # stopping must not hide the first error
                await consumer.stop()

    async def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        tp = TopicPartition(topic, partition)
        try:
            start = (await self._ends.beginning_offsets([tp]))[tp]
            end = (await self._ends.end_offsets([tp]))[tp]
        except Exception as exc:
            raise _failed(tp, "reading its offsets", exc) from exc
        return int(start), int(end)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition)
        self._records.assign([tp])
        self._records.seek(tp, offset)

    async def read(self, topic: str, partition: int, max_records: int,
                   timeout: float) -> tuple[Sequence[Any], int]:
        tp = TopicPartition(topic, partition)
        try:
            batches = await self._records.getmany(tp, timeout_ms=int(timeout * 1000),
                                                  max_records=max_records)
            position = int(await self._records.position(tp))
        except Exception as exc:
            raise _failed(tp, "reading it", exc) from exc
        return batches.get(tp, []), position


def _failed(tp: TopicPartition, what: str, exc: BaseException) -> RestoreError:
    return RestoreError(
        f"Restoring table changelog {tp.topic}[{tp.partition}] failed while {what}: "
        f"{exc!r}. The store keeps what was applied so far; the restore is retried.")
