"""Tables: keyed state that lives in RocksDB and commits with the transaction.

A write for key ``k`` goes to the changelog partition equal to the partition of the event
being processed (Faust semantics), so a table must be co-partitioned with the topic its
agent consumes: the same partition count, and the key that determines the table key must
be the record key. Repartition through a topic keyed by the table key otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from eoflow._serde import Codec, resolve_codec
from eoflow._stream import Event, current_event
from eoflow._windows import (
    Hopping,
    Seconds,
    Session,
    Sliding,
    Tumbling,
    WindowedTable,
    WindowSpec,
    split_key,
)
from eoflow.errors import ConfigurationError, TableUsageError

#: Key types whose encoding may be reused within one event (see :meth:`Table._target`).
_IMMUTABLE_KEYS = frozenset({str, bytes, int})

if TYPE_CHECKING:
    from eoflow._app import App

__all__ = ["GlobalTable", "ManagedSet", "SetTable", "Table", "TableBackend"]

KT = TypeVar("KT")
VT = TypeVar("VT")
_MISSING = object()


class TableBackend(Protocol):
    """What the running worker provides to tables (see ``eoflow._runtime.tables``)."""

    def partition_of(self, table: str, event: Event[Any, Any]) -> int:
        """The table partition for ``event``; refuses a topic not co-partitioned."""
        ...

    def get(self, table: str, partition: int, key: bytes) -> bytes | None: ...

    def clock(self) -> float:
        """Wall-clock time in seconds (the worker's clock)."""
        ...

    def stream_time(self, table: str, partition: int) -> float:
        """The partition's stream time in seconds (0 before its first event)."""
        ...

    def window_advance(self, table: Any, partition: int, t: float,
                       windows: list[Any]) -> list[Any]:
        """Move the partition's stream time to ``t`` if later; the windows still open."""
        ...

    def window_write(self, table: Any, partition: int, key: bytes, windows: list[Any],
                     change: Callable[[Any], Any]) -> list[Any]:
        """Apply ``change`` to ``key``'s value in each window; the windows that were new."""
        ...

    def window_late(self, table: Any, key: Any, change: Any, event: Event[Any, Any]) -> None:
        """An event came after all its windows closed: count it, call ``on_late``."""
        ...

    def session_written(self, table: Any, partition: int, end_ms: int) -> None:
        """A session ending at ``end_ms`` was written: it may close or expire from then."""
        ...

    def set(self, table: str, partition: int, key: bytes, value: bytes | None) -> None: ...

    def partitions(self, table: str) -> list[int]: ...

    def global_get(self, table: str, key: bytes) -> bytes | None:
        """A global table's value: this interval's own write, else the committed view."""
        ...

    def global_items(self, table: str) -> Iterator[tuple[bytes, bytes]]: ...

    def items(self, table: str, partition: int) -> Iterator[tuple[bytes, bytes]]: ...


class Table(MutableMapping[KT, VT], Generic[KT, VT]):
    """A keyed table; use it from an agent while it processes an event.

    A write belongs to the transaction of the event being processed, so writes happen
    only there. Outside an event, ``table.partition(3)`` reads one partition.
    """

    global_: bool = False

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
        key_type: type | None = None,
        value_type: type | None = None,
        on_window_close: Any = None,
    ) -> None:
        if store not in ("rocksdb://", "memory://"):
            raise ConfigurationError(
                f"table {name!r}: store={store!r}; use 'rocksdb://' or 'memory://'")
        self.app = app
        self.name = name
        self.default = default
        self.partitions = partitions
        self.store = store
        self.key_codec = resolve_codec(key_serializer, key_type, f"table {name!r} key")
        self.value_codec = resolve_codec(value_serializer, value_type, f"table {name!r} value")
        self._fixed_partition: int | None = None
        #: ``(event, key, backend, partition, encoded key)`` of the last key used while
        #: processing an event (see :meth:`_target`).
        self._memo: tuple[Event[Any, Any], Any, TableBackend, int, bytes] | None = None
        #: Called with ``(key, window, value)`` when a window closes (windowed tables).
        self.on_window_close = on_window_close
        #: Every worker reads all of it (:class:`GlobalTable`).
        self.global_ = type(self).global_
        #: Set by :meth:`tumbling` / :meth:`hopping` / :meth:`session` / :meth:`sliding`:
        #: per-window values.
        self.windowed: WindowedTable[KT, VT] | None = None

    # -- windows ------------------------------------------------------------------------
    def tumbling(self, size: Seconds, *, expires: Seconds | None = None, grace: Seconds = 0,
                 on_window_close: Any = None, on_late: Any = None) -> WindowedTable[KT, VT]:
        """Per-key values in back-to-back windows of ``size`` (seconds or a timedelta).

        A window closes once stream time passes its end plus ``grace`` (then
        ``on_window_close(key, window, value)`` runs, exactly once) and is deleted once
        stream time passes its end plus ``expires`` (default: the larger of size and
        grace). Events later than that are not applied: ``on_late(key, event)``.
        """
        return self._window(Tumbling(size), expires, grace, on_window_close, on_late)

    def hopping(self, size: Seconds, step: Seconds, *, expires: Seconds | None = None,
                grace: Seconds = 0, on_window_close: Any = None,
                on_late: Any = None) -> WindowedTable[KT, VT]:
        """Per-key values in windows of ``size`` starting every ``step`` (overlapping);
        an event updates every window holding its time. See :meth:`tumbling`."""
        return self._window(Hopping(size, step), expires, grace, on_window_close, on_late)

    def session(self, gap: Seconds, *, merge: Callable[[Any, Any], Any] | None = None,
                expires: Seconds | None = None, grace: Seconds = 0,
                on_window_close: Any = None, on_late: Any = None) -> WindowedTable[KT, VT]:
        """Per-key sessions: an event joins every session of its key it is less than
        ``gap`` (seconds or a timedelta) from, merging them (their values combined with
        ``merge(a, b)``, ``a + b`` by default); else it starts a session of its own.

        A session is ``[first event, last event]``, both included. It closes once stream
        time passes its end plus ``gap`` plus ``grace`` (``on_window_close`` runs, exactly
        once) and is deleted once stream time passes its end plus ``gap`` plus ``expires``
        (default: the larger of gap and grace). An event older than stream time minus
        ``grace`` is late: not applied, ``on_late(key, event)``.
        """
        return self._window(Session(gap), expires, grace, on_window_close, on_late, merge)

    def sliding(self, size: Seconds, *, merge: Callable[[Any, Any], Any] | None = None,
                expires: Seconds | None = None, grace: Seconds = 0,
                on_window_close: Any = None, on_late: Any = None) -> WindowedTable[KT, VT]:
        """Per-key values over the last ``size`` (seconds or a timedelta), at any time.

        A key has one window ``[t - size, t]`` (both ends included) per distinct event
        time ``t``, as in Kafka Streams. ``table[key] += x`` changes the key's contribution
        at the event's time; reads (``.current()``, ``.now()``, ``.delta(d)``) combine the
        contributions inside the window that ends at their time with ``merge(a, b)``
        (``a + b`` by default). The window ending at ``t`` closes once stream time passes
        ``t + grace`` (``on_window_close(key, window, value)`` runs, exactly once); a
        contribution is deleted once stream time passes its time plus ``size`` plus
        ``expires`` (default: the larger of size and grace). An event older than stream
        time minus ``grace`` is late: not applied, ``on_late(key, event)``.
        """
        return self._window(Sliding(size), expires, grace, on_window_close, on_late, merge)

    def _window(self, spec: WindowSpec, expires: Seconds | None, grace: Seconds,
                on_window_close: Any, on_late: Any,
                merge: Callable[[Any, Any], Any] | None = None) -> WindowedTable[KT, VT]:
        if self.windowed is not None:
            raise ConfigurationError(f"table {self.name!r} is windowed already")
        self.windowed = WindowedTable(self, spec, expires=expires, grace=grace,
                                      on_window_close=on_window_close, on_late=on_late,
                                      merge=merge)
        return self.windowed

    def _default(self) -> Any:
        if self.default is None:
            raise KeyError(self.name)
        return self.default()

    # -- partition resolution -------------------------------------------------------
    def partition(self, partition: int) -> Table[KT, VT]:
        """A view of this table bound to one partition: reads anywhere, writes only from an
        agent processing an event (they join that event's transaction)."""
        view: Table[KT, VT] = Table.__new__(Table)
        view.__dict__.update(self.__dict__)
        view._fixed_partition = partition
        return view

    def _target(self, action: str, key: Any) -> tuple[TableBackend, int, bytes]:
        """``(backend, partition, encoded key)`` of ``key``: the fixed partition of a view,
        else the partition of the event being processed (messages built only on error).

        Worked out once per event and key: ``table[k] += 1`` reads and writes ``k``, and
        code that reads ``table[k]`` after it needs the same three again.
        """
        if self._fixed_partition is not None:
            return self._backend(), self._fixed_partition, self.key_codec.dumps(key)
        event = current_event.get()
        memo = self._memo
        if (memo is not None and memo[0] is event and type(memo[1]) is type(key)
                and memo[1] == key):  # the type too: 1 == True, but not as JSON
            return memo[2], memo[3], memo[4]
        if event is None:
            raise TableUsageError(
                f"table {self.name!r}: {action} key {key!r} outside an event; eoflow cannot "
                f"tell which partition this belongs to. Use {self.name}.partition(N) to read "
                "it, or use the table from an agent while it processes an event")
        backend = self._backend()
        partition = backend.partition_of(self.name, event)
        encoded = self.key_codec.dumps(key)
        if type(key) in _IMMUTABLE_KEYS:  # a key changed in place would keep a stale encoding
            self._memo = (event, key, backend, partition, encoded)
        return backend, partition, encoded

    def _backend(self) -> TableBackend:
        runtime = self.app._runtime or self.app._require_runtime(f"use table {self.name!r}")
        return runtime.tables

    # -- mapping --------------------------------------------------------------------
    def __getitem__(self, key: KT) -> VT:
        backend, partition, encoded = self._target("reading", key)
        raw = backend.get(self.name, partition, encoded)
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
        backend, partition, encoded = self._target("writing", key)
        backend.set(self.name, partition, encoded, self.value_codec.dumps(value))

    def __delitem__(self, key: KT) -> None:
        backend, partition, encoded = self._target("deleting", key)
        if backend.get(self.name, partition, encoded) is None:
            raise KeyError(key)
        backend.set(self.name, partition, encoded, None)

    def __contains__(self, key: object) -> bool:
        backend, partition, encoded = self._target("looking up", key)
        return backend.get(self.name, partition, encoded) is not None

    def _partitions(self) -> list[int]:
        if self._fixed_partition is not None:
            return [self._fixed_partition]
        return self._backend().partitions(self.name)

    def __iter__(self) -> Iterator[KT]:
        for key, _ in self.items():
            yield key

    def items(self) -> Iterator[tuple[KT, VT]]:  # type: ignore[override]
        """Committed and pending items of every partition this worker owns (for a windowed
        table: ``((key, window), value)``)."""
        if self.windowed is not None:
            yield from self.windowed.items()  # type: ignore[misc]
            return
        backend = self._backend()
        for partition in self._partitions():
            for key, value in backend.items(self.name, partition):
                yield self.key_codec.loads(key), self.value_codec.loads(value)

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def decode_changelog(self, key: bytes, value: bytes | None) -> tuple[Any, Any] | None:
        """A changelog record as ``(key, value)`` (value None: deleted); None for records
        that are eoflow's own bookkeeping, not a key of the table. A windowed table's keys
        are ``(key, Window)``."""
        if self.windowed is None:
            return (self.key_codec.loads(key),
                    None if value is None else self.value_codec.loads(value))
        split = split_key(key)
        if split is None:  # stream time, a session index
            return None
        return ((self.key_codec.loads(split[0]), split[1]),
                None if value is None else self.value_codec.loads(value))

    def __repr__(self) -> str:
        return f"<Table {self.name}>"


class GlobalTable(Table[KT, VT]):
    """A table every worker reads whole, from anywhere; written like a :class:`Table`.

    Reads (``gt[key]``, ``in``, ``items()``, ``len()``) see the *committed* contents of
    every partition at some point in time, kept current in the background, plus this
    interval's own writes to the event's partition. Writes go to the event's partition
    and commit with its transaction (exactly once), so the table must be co-partitioned
    with the topics of the agents that write it.
    """

    global_ = True

    def _lookup(self, key: KT) -> bytes | None:
        return self._backend().global_get(self.name, self.key_codec.dumps(key))

    def __getitem__(self, key: KT) -> VT:
        raw = self._lookup(key)
        if raw is not None:
            return self.value_codec.loads(raw)  # type: ignore[no-any-return]
        if self.default is not None:
            return self.default()
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self._lookup(key) is not None  # type: ignore[arg-type]

    def items(self) -> Iterator[tuple[KT, VT]]:  # type: ignore[override]
        for key, raw in self._backend().global_items(self.name):
            yield self.key_codec.loads(key), self.value_codec.loads(raw)

    def __repr__(self) -> str:
        return f"<GlobalTable {self.name}>"


class SetTable(Table[KT, Any]):
    """A table of sets: ``tags[user].add("vip")``, ``tags[user] |= {"a", "b"}``,
    ``"vip" in tags[user]``. Each change writes the key's whole set (a JSON list)."""

    def __getitem__(self, key: KT) -> ManagedSet:
        return ManagedSet(self, key)

    def __setitem__(self, key: KT, value: Any) -> None:
        if isinstance(value, ManagedSet) and value.table is self and value.key == key:
            return  # ``table[k] |= ...`` assigns the updated view back: already written
        Table.__setitem__(self, key, sorted(set(value), key=repr))

    def _members(self, key: KT) -> set[Any]:
        try:
            stored = Table.__getitem__(self, key)
        except KeyError:
            return set()
        return set(stored) if stored else set()

    def _store(self, key: KT, members: set[Any]) -> None:
        if members:
            Table.__setitem__(self, key, sorted(members, key=repr))
        elif Table.__contains__(self, key):
            Table.__delitem__(self, key)

    def __repr__(self) -> str:
        return f"<SetTable {self.name}>"


class ManagedSet:
    """The set of one key of a :class:`SetTable`; changes are written back at once."""

    def __init__(self, table: SetTable[Any], key: Any) -> None:
        self.table = table
        self.key = key

    def _change(self, change: Callable[[set[Any]], None]) -> ManagedSet:
        members = self.table._members(self.key)
        change(members)
        self.table._store(self.key, members)
        return self

    def add(self, member: Any) -> None:
        self._change(lambda s: s.add(member))

    def discard(self, member: Any) -> None:
        self._change(lambda s: s.discard(member))

    def remove(self, member: Any) -> None:
        if member not in self:
            raise KeyError(member)
        self.discard(member)

    def update(self, *others: Any) -> None:
        self._change(lambda s: s.update(*others))

    def difference_update(self, *others: Any) -> None:
        self._change(lambda s: s.difference_update(*others))

    def clear(self) -> None:
        self._change(lambda s: s.clear())

    def __ior__(self, other: Any) -> ManagedSet:
        return self._change(lambda s: s.update(other))

    def __isub__(self, other: Any) -> ManagedSet:
        return self._change(lambda s: s.difference_update(other))

    def __contains__(self, member: object) -> bool:
        return member in self.table._members(self.key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.table._members(self.key))

    def __len__(self) -> int:
        return len(self.table._members(self.key))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ManagedSet):
            other = set(other)
        return self.table._members(self.key) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ManagedSet({self.table._members(self.key)!r})"
