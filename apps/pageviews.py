"""Page views per user per minute, with one final count per user and minute.

Run it (``make kafka-start`` first)::

    eoflow worker -A apps.pageviews
    eoflow send -A apps.pageviews page-views \
        '{"user": "ann", "page": "/home", "viewed_at": "2024-05-01T12:00:05Z"}'
    eoflow send -A apps.pageviews page-views \
        '{"user": "ann", "page": "/cart", "viewed_at": "2024-05-01T12:01:30Z"}'

(With ``-A`` the JSON is checked as a ``PageView`` before it is sent; without it, it goes
as it is and the worker dead-letters a view that does not validate.)

The second view moves stream time past 12:01:00 plus the 10 s of grace, so the minute
12:00 closes and ``views-per-minute`` gets ``{"user": "ann", "start":
"2024-05-01T12:00:00+00:00", ..., "views": 1}``, once, whatever crashes happen.

``page-views`` (a :class:`PageView` per record, any key) -> ``count_views``, which groups
the views by user (``group_by(PageView.user)``: through
``pageviews-count_views-user-repartition``, so one user's minutes live in one partition)
-> the tumbling table ``views`` (user, minute) -> when a minute closes, ``emit_final``
sends its count to ``views-per-minute``. A view that comes after its minute closed goes to
``page-views-late``: nothing is dropped silently.

**Which time is a view's time.** The table reads the time from the view itself,
``relative_to_field("viewed_at")``, and not from the record's Kafka timestamp (eoflow's
default). A page view is collected by a browser or an edge server and may reach Kafka
seconds or, after an outage, hours later; its Kafka timestamp is when it was produced, so
a backlog would be counted in the minute it was replayed (or found late), not in the
minute it was viewed. ``viewed_at`` is the time the user saw the page, so a replay counts
in the right minute as long as it is within ``grace``. It also lets ``eoflow send`` (which
cannot set a Kafka timestamp) feed any minute, as above. The price: the clock that writes
``viewed_at`` moves this app's stream time. A client whose clock is an hour ahead moves
its partition's stream time an hour ahead and closes every open minute of that partition
early; the views that follow are late. If your producers' clocks cannot be trusted, drop
``.relative_to_field(...)`` to use the Kafka timestamp (the producer's create time, or the
broker's append time with ``message.timestamp.type=LogAppendTime``), and set it when you
produce (``topic.send(timestamp=...)``).

Windows close on **stream time**: a partition's minute closes when a later view (any user)
arrives on the same partition of the repartition topic, never on the wall clock. A quiet
partition keeps its last minutes open until its next view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import eoflow
from eoflow import Window


class PageView(eoflow.Record):
    user: str
    page: str
    viewed_at: datetime  # aware; a naive datetime is read in the worker's local time


class MinuteViews(eoflow.Record):
    user: str
    start: datetime
    end: datetime
    views: int


app = eoflow.App("pageviews", topic_partitions=4)

page_views = app.topic("page-views", value_type=PageView)
views_per_minute = app.topic("views-per-minute", key_serializer="str", value_type=MinuteViews)
late_views = app.topic("page-views-late", key_serializer="str", value_type=PageView)


async def emit_final(user: str, window: Window, count: int) -> None:
    """Called once per closed (user, minute), inside the transaction that closed it."""
    await views_per_minute.send(key=user, value=MinuteViews(
        user=user, start=datetime.fromtimestamp(window.start, UTC),
        end=datetime.fromtimestamp(window.end, UTC), views=count))


async def too_late(user: str, event: eoflow.Event[object, PageView]) -> None:
    await late_views.send(key=user, value=event.value)


views = (app.Table("views", default=int, on_window_close=emit_final)
         .tumbling(60, grace=10, expires=timedelta(hours=1), on_late=too_late)
         .relative_to_field("viewed_at"))


@app.agent(page_views)
async def count_views(stream: eoflow.Stream[object, PageView]) -> None:
    async for view in stream.group_by(PageView.user):
        views[view.user] += 1
