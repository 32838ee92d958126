"""One partition's log, in memory, with Kafka's transactional visibility.

Records of a transaction are appended when sent and take offsets at once, like on a
broker; they become readable under ``read_committed`` only when the transaction's commit
marker is written, and an abort marker hides them for good. Markers take an offset too and
are never returned, so a reader's position moves past them. The last stable offset (LSO)
is the offset of the first record of the oldest transaction still open (the high
watermark when none is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["LogRecord", "PartitionLog"]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record as a consumer sees it (satisfies ``base.ConsumedRecord``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(slots=True)
class _Entry:
    record: LogRecord | None  # None: a transaction marker
    txn: int | None  # the transaction it belongs to (None: not transactional)


@dataclass
class PartitionLog:
    topic: str
    partition: int
    entries: list[_Entry] = field(default_factory=list)
    log_start: int = 0
    #: Transaction id -> "open" | "committed" | "aborted".
    status: dict[int, str] = field(default_factory=dict)
    #: First offset of each transaction that wrote here and is still open.
    _open_first: dict[int, int] = field(default_factory=dict)

    @property
    def high_watermark(self) -> int:
        return self.log_start + len(self.entries)

    @property
    def last_stable_offset(self) -> int:
        return min(self._open_first.values(), default=self.high_watermark)

    def append(self, key: bytes | None, value: bytes | None, timestamp: int,
               headers: Sequence[tuple[str, bytes]], txn: int | None) -> int:
        """Append a record (of transaction ``txn``, if any); returns its offset."""
        offset = self.high_watermark
        if txn is not None:
            self.status.setdefault(txn, "open")
            self._open_first.setdefault(txn, offset)
        self.entries.append(_Entry(LogRecord(self.topic, self.partition, offset, timestamp,
                                             key, value, tuple(headers)), txn))
        return offset

    def end_transaction(self, txn: int, commit: bool) -> None:
        """Write the transaction's marker; its records become readable or stay hidden."""
        if txn not in self._open_first:
            return
        del self._open_first[txn]
        self.status[txn] = "committed" if commit else "aborted"
        self.entries.append(_Entry(None, txn))

    def delete_before(self, offset: int) -> None:
        """``DeleteRecords``: the log starts at ``offset`` from now on."""
        if offset > self.high_watermark:
            raise ValueError(f"{self.topic}[{self.partition}]: cannot delete records before "
                             f"{offset}, past the high watermark {self.high_watermark}")
        if offset > self.log_start:
            del self.entries[:offset - self.log_start]
            self.log_start = offset

    def read(self, position: int, max_records: int, *,
             committed: bool = True) -> tuple[list[LogRecord], int]:
        """Records from ``position`` on (only committed ones up to the LSO when
        ``committed``) and the position after them."""
        end = self.last_stable_offset if committed else self.high_watermark
        position = max(position, self.log_start)
        out: list[LogRecord] = []
        while position < end and len(out) < max_records:
            entry = self.entries[position - self.log_start]
            record = entry.record
            if record is not None and (entry.txn is None or not committed
                                       or self.status[entry.txn] == "committed"):
                out.append(record)
            position += 1
        return out, position
