"""Withdrawal totals per user per hour and per country per 10 seconds.

A port of faust-streaming's ``examples/withdrawals.py``. Run it (``make kafka-start``
first)::

    eoflow worker -A apps.withdrawals
    eoflow send withdrawals --key ann '{"user": "ann", "country": "se", "amount": 250.0}'

(Without ``-A``, as for apps/pageviews.py: ``eoflow send -A`` cannot yet send JSON to a
topic with a ``Record`` value type. The key goes as UTF-8, which is what the topic's
``str`` key serializer reads.)

``withdrawals`` (a :class:`Withdrawal` per record, **keyed by user**) is read by two
agents:

- ``track_user_withdrawal`` adds each amount to ``user_to_total``, tumbling windows of an
  hour. The topic is keyed by user, so the table is co-partitioned with it as it is: no
  repartition. A producer that does not key by user splits a user's total over partitions
  (use ``group_by(Withdrawal.user)`` as below if you cannot trust the key).
- ``track_country_withdrawal`` groups by country (``group_by(Withdrawal.country)``:
  through ``withdrawals-track_country_withdrawal-country-repartition``) and adds to
  ``country_to_total``, tumbling windows of 10 s. When a window closes (10 s of grace
  after its end) its final total goes to ``country-totals``, once.

Windows use the record's Kafka timestamp (the producer's time); ``date`` is carried, not
used for time (``relative_to_field("date")`` would use it).

What differs from the Faust example:

- ``eoflow.Record`` and ``float`` totals (Faust's tables have ``default=int`` and add
  float amounts to them).
- In Faust, ``track_country_withdrawal`` is declared ``@app.agent()`` with no topic, so it
  reads its own topic, which nothing sends to: its table never changes. Here it reads
  ``withdrawals``, as its ``group_by(Withdrawal.country)`` intends. Two agents can read one
  topic; each gets every record.
- ``country_to_total`` gets an ``on_window_close`` hook that emits each closed window's
  total, and ``grace=10.0``: Faust counts an out-of-order withdrawal in any window not yet
  expired, eoflow only in a window not yet closed, and without grace a window closes at
  its end. Out-of-order is the rule after a repartition, which interleaves the source
  partitions: without grace, most withdrawals of a busy second would be late and not
  counted (``on_late`` logs any that still are). Faust's example only fills tables (read
  them with ``eoflow table dump -A apps.withdrawals country_to_total --from-changelog``).
- Faust's ``produce`` command (``@app.command``, not provided in eoflow) is
  :func:`sample`: a seeded list of withdrawals, usable as ``eoflow verify -A
  apps.withdrawals --inputs apps.withdrawals:sample --unordered`` (``--unordered``: the
  repartition interleaves the source partitions differently in every run, so per-country
  order differs; the totals do not).
- ``.relative_to_stream()`` is kept: as in Faust it only changes what ``.value()`` reads
  (the window of the partition's stream time); writes always go to the event's windows.
- ``processing_guarantee`` is exactly once (eoflow's default; commented out in Faust).
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import eoflow
from eoflow import Window

log = logging.getLogger(__name__)


class Withdrawal(eoflow.Record):
    user: str
    country: str
    amount: float
    date: datetime | None = None


class CountryTotal(eoflow.Record):
    country: str
    start: datetime
    end: datetime
    total: float


app = eoflow.App("withdrawals", topic_partitions=4)

withdrawals_topic = app.topic("withdrawals", key_serializer="str", value_type=Withdrawal)
country_totals = app.topic("country-totals", key_serializer="str", value_type=CountryTotal)


async def emit_country_total(country: str, window: Window, total: float) -> None:
    await country_totals.send(key=country, value=CountryTotal(
        country=country, start=datetime.fromtimestamp(window.start, UTC),
        end=datetime.fromtimestamp(window.end, UTC), total=total))


user_to_total = app.Table("user_to_total", default=float).tumbling(3600).relative_to_stream()

def late_withdrawal(country: str, event: eoflow.Event[str, Withdrawal]) -> None:
    log.warning("withdrawal %s came after %s's window closed: not counted",
                event.describe(), country)


# grace=10: the repartition interleaves the 4 source partitions, so event time is not in
# order on a country's partition. Faust applies an out-of-order event to any window not
# yet expired; eoflow only to windows not yet closed (end + grace, and grace defaults to
# 0), so this grace keeps Faust's tolerance of 10 s.
country_to_total = app.Table(
    "country_to_total", default=float, on_window_close=emit_country_total,
).tumbling(10.0, expires=10.0, grace=10.0, on_late=late_withdrawal).relative_to_stream()


@app.agent(withdrawals_topic)
async def track_user_withdrawal(withdrawals: eoflow.Stream[str, Withdrawal]) -> None:
    async for withdrawal in withdrawals:
        user_to_total[withdrawal.user] += withdrawal.amount


@app.agent(withdrawals_topic)
async def track_country_withdrawal(withdrawals: eoflow.Stream[str, Withdrawal]) -> None:
    async for withdrawal in withdrawals.group_by(Withdrawal.country):
        country_to_total[withdrawal.country] += withdrawal.amount


def sample(n: int = 1000) -> list[tuple[str, str, Withdrawal]]:
    """``n`` withdrawals as ``(topic, key, value)``, the same every call: 500 users, 90% of
    them from ``country_0``, whole amounts (float sums of whole numbers are exact, so a
    total does not depend on the order in which partitions interleave)."""
    rng = random.Random(5)
    countries = [f"country_{i}" for i in range(5)]
    weights = [0.9] + [0.1 / 4] * 4
    users = [f"user_{i}" for i in range(500)]
    out = []
    for _ in range(n):
        withdrawal = Withdrawal(user=rng.choice(users),
                                country=rng.choices(countries, weights)[0],
                                amount=float(rng.randrange(0, 25_000)))
        out.append(("withdrawals", withdrawal.user, withdrawal))
    return out
