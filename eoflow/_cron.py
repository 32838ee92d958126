"""Cron schedules (``minute hour day-of-month month day-of-week``), no dependency.

Each field is ``*``, a number, a range ``a-b``, any of these with a step ``/n``, or a
comma-separated list of them. Day of week: 0-7 (0 and 7 are Sunday), or ``sun``-``sat``;
months 1-12 or ``jan``-``dec``. As in cron, when both day fields are restricted, a day
matching either one matches. Times are computed in ``timezone`` (an IANA name, default UTC).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eoflow.errors import ConfigurationError

__all__ = ["Cron"]

_NAMES = {
    "dow": {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
    "month": {n: i + 1 for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul",
                                              "aug", "sep", "oct", "nov", "dec"])},
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
           ("dow", 0, 7))


class Cron:
    """A parsed cron expression; :meth:`next_after` gives the next firing time."""

    def __init__(self, expression: str, timezone: str | None = None) -> None:
        self.expression = expression
        parts = expression.split()
        if len(parts) != 5:
            raise ConfigurationError(
                f"cron {expression!r}: expected 5 fields (minute hour day month weekday), "
                f"got {len(parts)}")
        sets = [_parse(part, name, lo, hi, expression)
                for part, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, dows = sets
        self.dows = {d % 7 for d in dows}
        self._day_any = parts[2] == "*"
        self._dow_any = parts[4] == "*"
        try:
            self.tz = ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"cron timezone {timezone!r} is unknown: {exc}") from None

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.dows
        if self._day_any or self._dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, when: float) -> float:
        """The first firing time strictly after ``when`` (seconds since the epoch)."""
        t = datetime.fromtimestamp(when, self.tz).replace(second=0, microsecond=0)
        t += timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if t.month not in self.months or not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t.timestamp()
        raise ConfigurationError(f"cron {self.expression!r} never fires")


def _parse(part: str, name: str, lo: int, hi: int, expression: str) -> set[int]:
    values: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = lo, hi
            elif "-" in base:
                a, b = base.split("-", 1)
                first, last = _value(a, name), _value(b, name)
            else:
                first = _value(base, name)
                last = hi if step_text else first
        except ValueError:
            raise ConfigurationError(f"cron {expression!r}: cannot read {name} field "
                                     f"{part!r}") from None
        if step < 1 or not lo <= first <= last <= hi:
            raise ConfigurationError(f"cron {expression!r}: {name} field {part!r} is outside "
                                     f"{lo}-{hi}")
        values.update(range(first, last + 1, step))
    return values


def _value(text: str, name: str) -> int:
    names = _NAMES.get(name, {})
    return names[text.lower()] if text.lower() in names else int(text)
