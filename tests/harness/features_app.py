"""The harness app that uses the features of issues 11 and 12, configured like ``eo_app``.

``input`` (JSON ``{"id", "key", "n", "t"}``, ``t`` the event time in seconds, read by the
topic's ``timestamp_extractor``: every output and the repartition topic carry it):

* ``ingest`` takes batches (``take(10, within=0.05)``) and yields, for each input, its echo
  to two sinks: the ``echo`` topic and the ``audit`` agent, which writes ``audit-out``;
* ``aggregate`` groups the inputs by ``key`` (``group_by``, through the repartition topic
  ``{app}-aggregate-key-repartition``) and keeps, per key, the running fold in table
  ``aggs`` (emitted to ``aggregates``), the count per 1-second window of event time in the
  windowed table ``views`` (closed windows emitted once to ``finals``, late inputs to
  ``late``), the count per session (inputs of a key less than 2 s of event time apart) in
  the session table ``visits`` (closed sessions emitted once to ``session-finals``, late
  inputs to ``session-late``), the count over the last 3 s of event time in the sliding
  table ``recent`` (read back into each ``aggregates`` record; the window ending at each
  event time emitted once to ``slide-finals`` when it closes), and the last id in the
  global table ``firsts``;
* ``tick`` punctuates every input partition every 0.5 s: table ``ticks`` counts the runs
  per partition and each run emits its new count to ``ticks-out``;
* ``slice_tick`` punctuates on stream time, once per 1 s slice of event time an input
  partition had events in: table ``slices`` counts the runs per partition and each run
  emits ``{"p", "until", "n"}`` to ``slice-ticks``.

Run it with ``eoflow worker -A tests.harness.features_app --datadir DIR --instance-id ID``.
"""

from __future__ import annotations

from typing import Any

import eoflow

from .app_common import (
    APP_ID,
    EOFLOW_SETTINGS,
    PARTITIONS,
    PREFIX,
    echo_value,
    fold,
)

#: Windows of event time (seconds), how long a window waits for stragglers, and a
#: retention longer than any run (expiry is checked by unit tests; here every window
#: must stay comparable).
WINDOW, GRACE, EXPIRES = 1.0, 0.5, 1e6
#: Inputs of a key less than this far apart in event time share a session.
SESSION_GAP = 2.0
#: The sliding table counts a key's inputs in the last this many seconds of event time.
SLIDE = 3.0

#: The oracle folds the repartition topic read back whole: its consumed records stay (the
#: purge is checked by tests/unit/test_repartition_purge.py and test_repartition.py).
app = eoflow.App(APP_ID, **EOFLOW_SETTINGS, repartition_purge_interval=0)

#: Event times are in 2023 (``driver.EVENT_T0``) and flow to every output: topics keep
#: records (``Run`` creates the declared ones up front with the same config), or the
#: broker's retention check would delete them mid-run.
KEEP = {"retention.ms": "-1"}


def _topic(name: str, **options: Any) -> eoflow.Topic[Any, Any]:
    return app.topic(f"{PREFIX}-{name}", partitions=PARTITIONS, key_serializer="str",
                     config=KEEP, **options)


inputs = _topic("input", timestamp_extractor="t")
echo = _topic("echo")
audit_out = _topic("audit-out")
aggregates = _topic("aggregates")
finals = _topic("finals")
late = _topic("late")
ticks_out = _topic("ticks-out")
session_finals = _topic("session-finals")
session_late = _topic("session-late")
slide_finals = _topic("slide-finals")
slice_ticks = _topic("slice-ticks")
#: The audit agent's own topic, declared to give it KEEP (made by the worker).
audit_in = app.topic(f"{APP_ID}-audit", partitions=PARTITIONS, config=KEEP)

aggs = app.Table("aggs", default=dict, partitions=PARTITIONS)
firsts = app.GlobalTable("firsts", partitions=PARTITIONS)
ticks = app.Table("ticks", default=int, partitions=PARTITIONS)
slices = app.Table("slices", default=int, partitions=PARTITIONS)


async def close_window(key: str, window: eoflow.Window, count: int) -> None:
    await finals.send(key=key, value={"key": key, "start": window.start, "count": count})


async def on_late(key: str, event: eoflow.Event[Any, Any]) -> None:
    value = event.value
    await late.send(key=key, value={"id": value["id"], "key": key, "t": value["t"]})


views = (app.Table("views", default=int, partitions=PARTITIONS)
         .tumbling(WINDOW, grace=GRACE, expires=EXPIRES, on_window_close=close_window,
                   on_late=on_late)
         .relative_to_field("t"))


async def close_session(key: str, window: eoflow.Window, count: int) -> None:
    await session_finals.send(key=key, value={"key": key, "start": window.start,
                                              "end": window.end, "count": count})


async def on_session_late(key: str, event: eoflow.Event[Any, Any]) -> None:
    value = event.value
    await session_late.send(key=key, value={"id": value["id"], "key": key, "t": value["t"]})


visits = (app.Table("visits", default=int, partitions=PARTITIONS)
          .session(SESSION_GAP, grace=GRACE, expires=EXPIRES, on_window_close=close_session,
                   on_late=on_session_late))  # event time: the input's extracted "t"


async def close_slide(key: str, window: eoflow.Window, count: int) -> None:
    await slide_finals.send(key=key, value={"key": key, "end": window.end, "count": count})


recent = (app.Table("recent", default=int, partitions=PARTITIONS)
          .sliding(SLIDE, grace=GRACE, expires=EXPIRES, on_window_close=close_slide))


@app.agent(audit_in, name="audit")
async def audit(stream: eoflow.Stream[Any, dict[str, Any]]) -> None:
    async for value in stream:
        await audit_out.send(key=value["key"], value=value)


@app.agent(inputs, name="ingest", sink=[echo, audit])
async def ingest(stream: eoflow.Stream[str, dict[str, Any]]) -> Any:
    async for batch in stream.take_events(10, within=0.05):
        for event in batch:
            yield echo_value(event.value, event.partition, event.offset)


@app.agent(inputs, name="aggregate")
async def aggregate(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
    async for value in stream.group_by(lambda v: v["key"], name="key"):
        key = value["key"]
        agg = fold(aggs[key], value["n"])
        aggs[key] = agg
        recent[key] += 1
        await aggregates.send(key=key, value={"id": value["id"], **agg,
                                              "recent": recent[key].current()})
        views[key] += 1
        visits[key] += 1
        firsts[key] = value["id"]  # the last id per key: a deterministic fold


@app.punctuate(inputs, every=0.5, name="tick")
async def tick(partition: int) -> None:
    ticks[str(partition)] += 1
    await ticks_out.send(key=str(partition),
                         value={"p": partition, "n": ticks[str(partition)]})


@app.punctuate(inputs, every=WINDOW, on="stream_time", name="slice_tick")
async def slice_tick(partition: int, until: float) -> None:
    slices[str(partition)] += 1
    await slice_ticks.send(key=str(partition),
                           value={"p": partition, "until": until, "n": slices[str(partition)]})
