"""Windowed tables: per-key values per time window, with Faust's names.

::

    views = app.Table("views", default=int).tumbling(60, expires=3600)

    @app.agent(clicks)
    async def count(stream):
        async for user, click in stream.items():
            views[user] += 1                    # every window holding the event's time
            views[user].current()               # its (latest) window's value

Time is event time: a record's Kafka timestamp (or ``relative_to_field``). Each table
partition has a *stream time*, the largest event time its events brought, kept in the
changelog with the table's data, so it comes back after a crash exactly as committed. A
window closes when stream time passes its end plus ``grace``: ``on_window_close(key,
window, value)`` runs then, once, inside the transaction of the event that moved stream
time. Events for closed windows are late: not applied, counted, and passed to
``on_late``. Windows are deleted (changelog tombstones, same transaction) once stream
time passes their end plus ``expires``, so the store stays bounded.

Session windows (``Table.session(gap)``) are per key: an event joins every session of its
key it is less than ``gap`` from, merging them into one (values combined with ``merge``, ``+``
by default); a session is ``[first event, last event]``, both ends included, and closes
once stream time passes its end plus ``gap`` plus ``grace`` (no later event may join it
then). An event older than stream time minus ``grace`` is late.

Sliding windows (``Table.sliding(size)``) answer "the value over the last ``size`` seconds"
at any time, as Kafka Streams' sliding windows do: a key has one window ``[t - size, t]``
(both ends included) per distinct event time ``t``. A write changes the event's own
*contribution* (the key's value at exactly that time); a read combines the contributions
in the window with ``merge`` (``+`` by default). The window ending at ``t`` closes once
stream time passes ``t + grace`` (``on_window_close`` runs once, with the combined value);
a contribution is deleted once stream time passes its time plus ``size`` plus ``expires``.
An event older than stream time minus ``grace`` is late.
"""

from __future__ import annotations

import functools
import math
import operator
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eoflow._stream import Event, _field_getter, current_event
from eoflow.errors import ConfigurationError, SerializationError, TableUsageError

if TYPE_CHECKING:
    from eoflow._table import Table

__all__ = ["Hopping", "Session", "Sliding", "Tumbling", "Window", "WindowSet", "WindowSpec",
           "WindowedTable"]

KT = TypeVar("KT")
VT = TypeVar("VT")

#: Store key of a partition's stream time (sorts before every window key).
STREAM_TIME_KEY = b"\x00stream_time"
_WINDOW = b"W"
#: First byte past every window key (the end of a range read over windows).
WINDOWS_END = b"X"
#: Session tables keep, per key, the bounds of its sessions (``S`` + key -> bounds).
_SESSIONS = b"S"
_BOUNDS = struct.Struct(">QQ")

Seconds = float | int | timedelta
Merge = Callable[[Any, Any], Any]
CloseHook = Callable[[Any, "Window", Any], "Awaitable[None] | None"]
LateHook = Callable[[Any, Any, Event[Any, Any]], "Awaitable[None] | None"]


def seconds(value: Seconds, what: str) -> float:
    """Seconds from a number or a timedelta; refuses what is not positive."""
    s = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not s > 0 or math.isinf(s):
        raise ConfigurationError(f"{what} must be a positive duration, got {value!r}")
    return s


@dataclass(frozen=True, order=True)
class Window:
    """A time window ``[start, end)`` in seconds since the epoch."""

    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end

    def __repr__(self) -> str:
        return f"Window({self.start:g}, {self.end:g})"


class WindowSpec:
    """Which windows hold a timestamp."""

    size: float
    step: float
    #: How long after its end a stored window is still needed: a session's gap (it can
    #: still grow), a sliding window's size (later windows read it). It is deleted once
    #: stream time passes end + tail + expires.
    tail: float = 0.0
    #: How long after its end a stored window closes: at end + close_tail + grace.
    close_tail: float = 0.0
    #: Whether a window's end is one of its times (sessions) or just past them.
    inclusive_end = False
    #: Windows are found through a per-key index (sessions, sliding contributions) rather
    #: than computed from the time; they end anywhere, so the runtime keeps a due hint.
    indexed = False

    def describe(self) -> str:
        """The spec in words (``eoflow tables``)."""
        return f"{type(self).__name__.lower()} size={self.size:g}s step={self.step:g}s"

    def windows(self, t: float) -> list[Window]:
        """Every window holding ``t``, oldest first."""
        raise NotImplementedError

    def current(self, t: float) -> Window:
        """The newest window holding ``t``."""
        return self.windows(t)[-1]

    def ends_between(self, low_ms: int, high_ms: int) -> bool:
        """Whether some window ends in ``(low_ms, high_ms]`` (ms)."""
        after = self.end_after(low_ms)
        return after is None or after <= high_ms

    @functools.cached_property
    def _grid(self) -> tuple[int, int] | None:
        """``(step, offset)`` in ms: window ends are ``offset + k * step``; None when they
        are not whole milliseconds."""
        step, size = self.step * 1000, self.size * 1000
        if abs(step - round(step)) > 1e-6 or abs(size - round(size)) > 1e-6:
            return None
        return round(step), round(size) % round(step)

    def end_after(self, low_ms: int) -> int | None:
        """The first window end (ms) strictly after ``low_ms``. Window ends are
        ``size + k * step``; None when those are not whole milliseconds (then any time
        may be one: callers scan)."""
        grid = self._grid
        if grid is None:
            return None
        step_ms, offset = grid
        return ((low_ms - offset) // step_ms + 1) * step_ms + offset


class Tumbling(WindowSpec):
    """Back-to-back windows of ``size`` seconds."""

    def __init__(self, size: Seconds) -> None:
        self.size = self.step = seconds(size, "window size")
        self._last = Window(0.0, 0.0)  # the window of the previous call (most repeat it)

    def windows(self, t: float) -> list[Window]:
        last = self._last
        if last.start <= t < last.end:
            return [last]
        start = math.floor(t / self.size) * self.size
        self._last = last = Window(start, start + self.size)
        return [last]


class Hopping(WindowSpec):
    """Windows of ``size`` seconds starting every ``step`` seconds (they overlap)."""

    def __init__(self, size: Seconds, step: Seconds) -> None:
        self.size = seconds(size, "window size")
        self.step = seconds(step, "window step")
        if self.step > self.size:
            raise ConfigurationError(
                f"hopping window step {self.step:g}s is larger than its size {self.size:g}s: "
                "some events would fall in no window")
        self._lo = self._hi = 0.0  # the times the previous call's windows hold
        self._last: list[Window] = []

    def windows(self, t: float) -> list[Window]:
        if self._lo <= t < self._hi:  # between the same starts and ends as the last call
            return list(self._last)
        last = math.floor(t / self.step) * self.step
        first = math.floor((t - self.size) / self.step + 1) * self.step
        count = round((last - first) / self.step) + 1
        found = [Window(first + i * self.step, first + i * self.step + self.size)
                 for i in range(count) if first + i * self.step <= t]
        if found:  # the same windows hold every time from the newest start (and the end
            # of the window before the oldest) to the next start (and the oldest's end)
            self._lo = max(found[-1].start, found[0].start - self.step + self.size)
            self._hi = min(found[-1].start + self.step, found[0].end)
            self._last = found
        return list(found)


class Session(WindowSpec):
    """Per-key sessions: events less than ``gap`` seconds apart belong to one session."""

    tail_ms: int
    inclusive_end = True
    indexed = True

    def __init__(self, gap: Seconds) -> None:
        self.gap = self.size = self.step = self.tail = seconds(gap, "session gap")
        self.close_tail = self.tail
        self.tail_ms = _ms(self.gap)

    def windows(self, t: float) -> list[Window]:
        return [Window(t, t)]  # the event's own session, before it joins its neighbours

    def end_after(self, low_ms: int) -> int | None:
        return None  # a session ends at any event's time (the runtime keeps a due hint)

    def describe(self) -> str:
        return f"session gap={self.gap:g}s"


class Sliding(WindowSpec):
    """Per-key windows ``[t - size, t]``, one per distinct event time ``t`` of the key.

    What is stored is each event time's contribution (a window ``[t, t]``); a window's
    value combines the contributions inside it.
    """

    inclusive_end = True
    indexed = True

    def __init__(self, size: Seconds) -> None:
        self.size = self.step = seconds(size, "window size")
        self.size_ms = _ms(self.size)
        # An event at exactly stream time - grace is not late and belongs to the window
        # ending at its time: a window closes, and a contribution goes, only once stream
        # time is strictly past (by a millisecond) its end + grace, end + size + expires.
        self.close_tail = 0.001
        self.tail = self.size + 0.001

    def windows(self, t: float) -> list[Window]:
        return [Window(t, t)]  # the event's own contribution

    def current(self, t: float) -> Window:
        return Window(t - self.size, t)

    def end_after(self, low_ms: int) -> int | None:
        return None  # contributions sit at any event's time (the runtime keeps a due hint)

    def describe(self) -> str:
        return f"sliding size={self.size:g}s"


def session_index_key(key: bytes) -> bytes:
    """The store key of the bounds of ``key``'s sessions."""
    return _SESSIONS + key


def pack_sessions(bounds: list[tuple[int, int]]) -> bytes:
    """``[(end_ms, start_ms), ...]`` as a session index value (sorted by end)."""
    return b"".join(_BOUNDS.pack(end, start) for end, start in sorted(bounds))


def unpack_sessions(raw: bytes | None) -> list[tuple[int, int]]:
    if not raw:
        return []
    return [_BOUNDS.unpack_from(raw, i) for i in range(0, len(raw), _BOUNDS.size)]


def window_key(key: bytes, window: Window) -> bytes:
    """The store and changelog key of ``key`` in ``window`` (ordered by window end)."""
    prefix = window.__dict__.get("_prefix")
    if prefix is None:  # once per Window object: the specs hand out the same one per slot
        prefix = window.__dict__["_prefix"] = _WINDOW + _BOUNDS.pack(_ms(window.end),
                                                                     _ms(window.start))
    return prefix + key


def window_key_ms(key: bytes, end_ms: int, start_ms: int) -> bytes:
    return _WINDOW + _BOUNDS.pack(end_ms, start_ms) + key


def end_prefix(end_ms: int) -> bytes:
    """The first store key of windows ending at ``end_ms`` (for range scans)."""
    return _WINDOW + struct.pack(">Q", max(end_ms, 0))


def split_key(stored: bytes) -> tuple[bytes, Window] | None:
    """``(key, window)`` of a window key; None for eoflow's own records."""
    if not stored.startswith(_WINDOW) or len(stored) < 1 + _BOUNDS.size:
        return None
    end_ms, start_ms = _BOUNDS.unpack_from(stored, 1)
    return stored[1 + _BOUNDS.size:], Window(start_ms / 1000, end_ms / 1000)


def _ms(t: float) -> int:
    return max(round(t * 1000), 0)


def event_time(event: Event[Any, Any], field: Callable[[Any], Any] | None) -> float:
    """An event's time in seconds: its timestamp, or a field of its value."""
    if field is None:
        return event.timestamp / 1000
    found = field(event.value)
    t = time_seconds(found)
    if t is None:
        raise SerializationError(  # this record's fault, not the app's: dead-lettered
            f"relative_to_field: the field of {event.describe()} is {found!r}; a time must "
            "be a datetime or seconds since the epoch")
    return t


def time_seconds(found: Any) -> float | None:
    """A datetime or a number of seconds since the epoch as seconds; None if neither."""
    if isinstance(found, datetime):
        return found.timestamp()
    if isinstance(found, int | float) and not isinstance(found, bool):
        return float(found)
    return None


def time_getter(field: Callable[[Any], Any] | str) -> Callable[[Any], Any]:
    """A function of a value giving its time: ``field`` itself, or the field it names."""
    return field if callable(field) else _field_getter(field)


class WindowedTable(Generic[KT, VT]):
    """A table of per-window values (see the module docstring). Made by
    ``Table.tumbling(...)``, ``.hopping(...)``, ``.session(...)``, ``.sliding(...)``."""

    def __init__(self, table: Table[KT, VT], spec: WindowSpec, *, expires: Seconds | None,
                 grace: Seconds = 0.0, on_window_close: CloseHook | None = None,
                 on_late: LateHook | None = None, merge: Merge | None = None) -> None:
        self.table = table
        self.spec = spec
        #: The table's name (an attribute: read several times per event).
        self.name = table.name
        #: Combines the values of sessions an event joins (session tables), the
        #: contributions inside a window (sliding tables).
        self.merge: Merge = merge or operator.add
        self.grace = 0.0 if not grace else seconds(grace, "grace")
        self.expires = (max(spec.size, self.grace) if expires is None
                        else seconds(expires, "expires"))
        if self.expires < self.grace:
            raise ConfigurationError(
                f"table {table.name!r}: expires={self.expires:g}s is shorter than "
                f"grace={self.grace:g}s: windows would be deleted before they close")
        self.on_window_close = on_window_close or table.on_window_close
        self.on_late = on_late
        self.relative_to: str = "event"
        self.relative_field: Callable[[Any], Any] | None = None
        #: Events not applied because every window holding them was closed.
        self.late = 0

    # -- relative_to --------------------------------------------------------------------
    def _with(self, relative_to: str, field: Callable[[Any], Any] | None = None
              ) -> WindowedTable[KT, VT]:
        view: WindowedTable[KT, VT] = WindowedTable.__new__(WindowedTable)
        view.__dict__.update(self.__dict__)
        view.relative_to, view.relative_field = relative_to, field
        return view

    def relative_to_stream(self) -> WindowedTable[KT, VT]:
        """``.value()`` reads the window of the partition's stream time."""
        return self._with("stream")

    def relative_to_now(self) -> WindowedTable[KT, VT]:
        """``.value()`` reads the window of the wall clock."""
        return self._with("now")

    def relative_to_field(self, field: Callable[[Any], Any] | str) -> WindowedTable[KT, VT]:
        """Event time from a field of the value (a datetime, or seconds since the epoch):
        windows are chosen, and ``.value()`` reads, by it."""
        return self._with("field", time_getter(field))

    # -- mapping-like ----------------------------------------------------------------------
    def __getitem__(self, key: KT) -> WindowSet[KT, VT]:
        return WindowSet(self, key)

    def __setitem__(self, key: KT, value: Any) -> None:
        if isinstance(value, WindowSet) and value.table is self and value.key == key:
            return  # ``table[k] += 1`` assigns the updated WindowSet back: already applied
        WindowSet(self, key).set(value)

    def items(self) -> Iterator[tuple[tuple[KT, Window], VT]]:
        """``((key, window), value)`` of every window of the partitions this worker owns
        (of a sliding table: the window ending at each event time of each key)."""
        for partition in self.table._partitions():
            yield from self.windows_of(self._stored(partition))

    def _stored(self, partition: int) -> Iterator[tuple[tuple[Any, Window], Any]]:
        """The decoded ``((key, window), value)`` entries stored in one partition."""
        table = self.table
        for stored, raw in table._backend().items(self.name, partition):
            split = split_key(stored)
            if split is not None:
                yield (table.key_codec.loads(split[0]), split[1]), table.value_codec.loads(raw)

    def windows_of(self, stored: Iterable[tuple[tuple[Any, Window], Any]]
                   ) -> Iterator[tuple[tuple[Any, Window], Any]]:
        """Decoded stored windows as the table's windows: themselves, except in a sliding
        table, whose stored contributions (``[t, t]``) become the window ending at each
        contribution's time, ``[t - size, t]``, with the contributions inside combined."""
        if not isinstance(self.spec, Sliding):
            yield from stored
            return
        contributions: dict[Any, list[tuple[int, Any]]] = {}
        for (key, window), value in stored:
            contributions.setdefault(key, []).append((_ms(window.end), value))
        for key, timed in contributions.items():
            timed.sort(key=lambda tv: tv[0])
            for t_ms, _ in timed:
                low = t_ms - self.spec.size_ms
                window = Window(low / 1000, t_ms / 1000)
                yield (key, window), self.combine(
                    [v for t, v in timed if low <= t <= t_ms], key, window)

    # -- combining (sessions, sliding windows) ---------------------------------------------
    def combine(self, values: list[Any], key: Any, window: Window | None = None) -> Any:
        """``values`` folded with ``merge``, oldest first; the default when there are none.
        ``window`` names the sliding window being read (None: sessions merging)."""
        if not values:
            return self.table._default()
        current = values[0]
        for value in values[1:]:
            try:
                current = self.merge(current, value)
            except TypeError as exc:
                what, kind = (("sessions", "session") if window is None
                              else (f"contributions in {window!r}", "sliding"))
                raise TableUsageError(
                    f"{kind} table {self.name!r}: cannot merge the {what} of key {key!r} "
                    f"({current!r} and {value!r}): {exc}; declare merge=... on "
                    f".{kind}()") from exc
        return current

    def sliding_value(self, get: Callable[[bytes], bytes | None], key: bytes,
                      decoded: Any, low_ms: int, high_ms: int) -> Any:
        """The combined contributions of ``key`` timed in ``[low_ms, high_ms]``, read with
        ``get`` (a store or overlay lookup)."""
        loads = self.table.value_codec.loads
        values = []
        for t_ms, _ in unpack_sessions(get(session_index_key(key))):
            if low_ms <= t_ms <= high_ms:
                raw = get(window_key_ms(key, t_ms, t_ms))
                if raw is not None:
                    values.append(loads(raw))
        return self.combine(values, decoded, Window(low_ms / 1000, high_ms / 1000))

    def __repr__(self) -> str:
        return f"<WindowedTable {self.name} {type(self.spec).__name__.lower()}>"


class WindowSet(Generic[KT, VT]):
    """The windows of one key, as the current event sees them.

    ``+=`` (and the other in-place operators) and :meth:`set` change every window holding
    the event's time; reads pick one window: :meth:`current` (the event's), :meth:`now`
    (the wall clock's), :meth:`value` (per ``relative_to``), :meth:`delta`.
    """

    def __init__(self, table: WindowedTable[KT, VT], key: KT) -> None:
        self.table = table
        self.key = key

    # -- the event -------------------------------------------------------------------
    def _event(self, action: str) -> Event[Any, Any]:
        event = current_event.get()
        if event is None:
            raise TableUsageError(
                f"windowed table {self.table.name!r}: {action} key {self.key!r} outside an "
                "event; a window needs the event's time (read committed windows with "
                f"{self.table.name}.items() instead)")
        return event

    def _time(self, event: Event[Any, Any]) -> float:
        return event_time(event, self.table.relative_field)

    def _apply(self, change: Callable[[Any], Any]) -> WindowSet[KT, VT]:
        event = current_event.get() or self._event("writing")
        windowed = self.table
        t = event_time(event, windowed.relative_field)
        runtime, partition, key = windowed.table._target("writing", self.key)
        open_windows = runtime.window_advance(windowed, partition, t,
                                              windowed.spec.windows(t))
        if not open_windows:
            windowed.late += 1
            runtime.window_late(windowed, self.key, change, event)
            return self
        if isinstance(windowed.spec, Session):
            self._apply_session(change, runtime, partition, key, _ms(t))
            return self
        new = runtime.window_write(windowed, partition, key, open_windows, change)
        if windowed.spec.indexed:  # a sliding table's new contributions
            for window in new:
                self._index(runtime, partition, key, _ms(window.end))
        return self

    def _index(self, runtime: Any, partition: int, key: bytes, t_ms: int) -> None:
        """Add the time of a new contribution to its key's index (sliding tables)."""
        index = session_index_key(key)
        times = unpack_sessions(runtime.get(self.table.name, partition, index))
        runtime.set(self.table.name, partition, index, pack_sessions([*times, (t_ms, t_ms)]))
        runtime.session_written(self.table, partition, t_ms)

    def _apply_session(self, change: Callable[[Any], Any], runtime: Any, partition: int,
                       key: bytes, t_ms: int) -> None:
        """Join the event to the key's sessions less than gap from it (merging them), or
        start one. An event that is not late (``t + grace >= stream time``) is never that
        near a closed session (``end + gap + grace <= stream time``)."""
        windowed = self.table
        spec = windowed.spec
        assert isinstance(spec, Session)
        name, codec, gap = windowed.name, windowed.table.value_codec, spec.tail_ms
        index = session_index_key(key)
        sessions = unpack_sessions(runtime.get(name, partition, index))
        joined = [(end, start) for end, start in sessions
                  if start - gap < t_ms < end + gap]
        end = max([t_ms, *(e for e, _ in joined)])
        start = min([t_ms, *(s for _, s in joined)])
        values = []
        for bounds in joined:
            stored = window_key_ms(key, *bounds)
            raw = runtime.get(name, partition, stored)
            values.append(codec.loads(raw) if raw is not None else windowed.table._default())
            if bounds != (end, start):
                runtime.set(name, partition, stored, None)
        current = windowed.combine(values, self.key)
        runtime.set(name, partition, window_key_ms(key, end, start),
                    codec.dumps(change(current)))
        kept = [b for b in sessions if b not in joined]
        runtime.set(name, partition, index, pack_sessions([*kept, (end, start)]))
        runtime.session_written(windowed, partition, end)

    def _session_at(self, runtime: Any, partition: int, key: bytes,
                    t: float) -> Window | None:
        """The key's session holding ``t``, if any."""
        t_ms = _ms(t)
        for end, start in unpack_sessions(
                runtime.get(self.table.name, partition, session_index_key(key))):
            if start <= t_ms <= end:
                return Window(start / 1000, end / 1000)
        return None

    def set(self, value: Any) -> None:
        """Set the value of every window holding the event's time."""
        self._apply(lambda _: value)

    def __iadd__(self, other: Any) -> WindowSet[KT, VT]:
        return self._apply(lambda v: v + other)

    def __isub__(self, other: Any) -> WindowSet[KT, VT]:
        return self._apply(lambda v: v - other)

    def __imul__(self, other: Any) -> WindowSet[KT, VT]:
        return self._apply(lambda v: v * other)

    def __itruediv__(self, other: Any) -> WindowSet[KT, VT]:
        return self._apply(lambda v: v / other)

    def __ior__(self, other: Any) -> WindowSet[KT, VT]:
        return self._apply(lambda v: v | other)

    # -- reads -------------------------------------------------------------------------
    def _read(self, t: float, window: Window | None = None) -> Any:
        if current_event.get() is None:
            self._event("reading")  # raises: a window read needs an event
        windowed = self.table
        table = windowed.table
        runtime, partition, key = table._target("reading", self.key)
        spec = windowed.spec
        if spec.indexed:
            if window is None and isinstance(spec, Session):
                window = self._session_at(runtime, partition, key, t)
                if window is None:
                    return table._default()
            window = window or spec.current(t)
            if isinstance(spec, Sliding):
                return windowed.sliding_value(
                    lambda stored: runtime.get(windowed.name, partition, stored), key,
                    self.key, _ms(window.start), _ms(window.end))
        raw = runtime.get(windowed.name, partition, window_key(key, window or spec.current(t)))
        if raw is None:
            return table._default()
        return table.value_codec.loads(raw)

    def current(self) -> Any:
        """The value in the (newest) window of the current event's time."""
        return self._read(self._time(self._event("reading")))

    def now(self) -> Any:
        """The value in the (newest) window of the wall clock's time."""
        return self._read(self.table.table._backend().clock())

    def value(self) -> Any:
        """The value per the table's ``relative_to``: the event's time (default, and
        ``relative_to_field``), the partition's stream time, or now."""
        mode = self.table.relative_to
        if mode == "now":
            return self.now()
        if mode == "stream":
            event = self._event("reading")
            runtime = self.table.table._backend()
            partition = runtime.partition_of(self.table.name, event)
            return self._read(runtime.stream_time(self.table.name, partition))
        return self.current()

    def delta(self, d: Seconds) -> Any:
        """The value in the window of (the ``value()`` time) minus ``d``."""
        shift = d.total_seconds() if isinstance(d, timedelta) else float(d)
        mode = self.table.relative_to
        runtime = self.table.table._backend()
        if mode == "now":
            base = runtime.clock()
        elif mode == "stream":
            event = self._event("reading")
            base = runtime.stream_time(self.table.name,
                                       runtime.partition_of(self.table.name, event))
        else:
            base = self._time(self._event("reading"))
        return self._read(base - shift)

    def __getitem__(self, window: Window) -> Any:
        """The value in one given window."""
        return self._read(window.start, window)

    def __repr__(self) -> str:
        return f"<WindowSet {self.table.name}[{self.key!r}]>"
