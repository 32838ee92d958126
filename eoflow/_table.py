"""Tables: keyed state that lives in RocksDB and commits with the transaction.

A write for key ``k`` goes to the changelog partition equal to the partition of the event
being processed (Faust semantics), so a table must be co-partitioned with the topic its
agent consumes: the same partition count, and the key that determines the table key must
be the record key. Repartition through a topic keyed by the table key otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from eoflow._serde import Codec, codec_for
from eoflow._stream import Event, current_event
from eoflow.errors import ConfigurationError, TableUsageError

if TYPE_CHECKING:
    from eoflow._app import App

__all__ = ["Table", "TableBackend"]

KT = TypeVar("KT")
VT = TypeVar("VT")
_MISSING = object()


class TableBackend(Protocol):
    """What the running worker provides to tables (see ``eoflow._runtime.tables``)."""

    def partition_of(self, table: str, event: Event[Any, Any]) -> int:
        """The table partition for ``event``; refuses a topic not co-partitioned."""
        ...

    def get(self, table: str, partition: int, key: bytes) -> bytes | None: ...

    def set(self, table: str, partition: int, key: bytes, value: bytes | None) -> None: ...

    def partitions(self, table: str) -> list[int]: ...

    def items(self, table: str, partition: int) -> Iterator[tuple[bytes, bytes]]: ...


class Table(MutableMapping[KT, VT], Generic[KT, VT]):
    """A keyed table; use it from an agent while it processes an event.

    A write belongs to the transaction of the event being processed, so writes happen
    only there. Outside an event, ``table.partition(3)`` reads one partition.
    """

    def __init__(
        self,
        app: App,
        name: str,
        *,
        default: Callable[[], VT] | None = None,
        partitions: int | None = None,
        store: str = "rocksdb://",
        key_serializer: str | Codec = "json",
        value_serializer: str | Codec = "json",
    ) -> None:
        if store not in ("rocksdb://", "memory://"):
            raise ConfigurationError(
                f"table {name!r}: store={store!r}; use 'rocksdb://' or 'memory://'")
        self.app = app
        self.name = name
        self.default = default
        self.partitions = partitions
        self.store = store
        self.key_codec = codec_for(key_serializer)
        self.value_codec = codec_for(value_serializer)
        self._fixed_partition: int | None = None

    # -- partition resolution -------------------------------------------------------
    def partition(self, partition: int) -> Table[KT, VT]:
        """A view of this table bound to one partition: reads anywhere, writes only from an
        agent processing an event (they join that event's transaction)."""
        view: Table[KT, VT] = Table.__new__(Table)
        view.__dict__.update(self.__dict__)
        view._fixed_partition = partition
        return view

    def _current_partition(self, action: str, key: object) -> int:
        """The partition of the event being processed (messages built only on error)."""
        if self._fixed_partition is not None:
            return self._fixed_partition
        event = current_event.get()
        if event is None:
            raise TableUsageError(
                f"table {self.name!r}: {action} key {key!r} outside an event; eoflow cannot "
                f"tell which partition this belongs to. Use {self.name}.partition(N) to read "
                "it, or use the table from an agent while it processes an event")
        return self._backend().partition_of(self.name, event)

    def _backend(self) -> TableBackend:
        runtime = self.app._runtime or self.app._require_runtime(f"use table {self.name!r}")
        return runtime.tables

    # -- mapping --------------------------------------------------------------------
    def __getitem__(self, key: KT) -> VT:
        partition = self._current_partition("reading", key)
        raw = self._backend().get(self.name, partition, self.key_codec.dumps(key))
        if raw is not None:
            return self.value_codec.loads(raw)  # type: ignore[no-any-return]
        if self.default is not None:
            return self.default()
        raise KeyError(key)

    def get(self, key: KT, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: KT, value: VT) -> None:
        partition = self._current_partition("writing", key)
        self._backend().set(
            self.name, partition, self.key_codec.dumps(key), self.value_codec.dumps(value))

    def __delitem__(self, key: KT) -> None:
        partition = self._current_partition("deleting", key)
        backend = self._backend()
        key_bytes = self.key_codec.dumps(key)
        if backend.get(self.name, partition, key_bytes) is None:
            raise KeyError(key)
        backend.set(self.name, partition, key_bytes, None)

    def __contains__(self, key: object) -> bool:
        partition = self._current_partition("looking up", key)
        raw = self._backend().get(self.name, partition, self.key_codec.dumps(key))
        return raw is not None

    def _partitions(self) -> list[int]:
        if self._fixed_partition is not None:
            return [self._fixed_partition]
        return self._backend().partitions(self.name)

    def __iter__(self) -> Iterator[KT]:
        for key, _ in self.items():
            yield key

    def items(self) -> Iterator[tuple[KT, VT]]:  # type: ignore[override]
        """Committed and pending items of every partition this worker owns."""
        backend = self._backend()
        for partition in self._partitions():
            for key, value in backend.items(self.name, partition):
                yield self.key_codec.loads(key), self.value_codec.loads(value)

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def decode_changelog(self, key: bytes, value: bytes | None) -> tuple[Any, Any] | None:
        """A changelog record as ``(key, value)`` (value None: deleted); None for records
        that are eoflow's own bookkeeping, not a key of the table."""
        return (self.key_codec.loads(key),
                None if value is None else self.value_codec.loads(value))

    def __repr__(self) -> str:
        return f"<Table {self.name}>"
