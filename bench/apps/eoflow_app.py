"""eoflow: passthrough or stateful count (BENCH_WORKLOAD), guarantee from BENCH_GUARANTEE.

eoflow-only workloads, each one output per input like the two above (issues 11, 12):
``take100`` is passthrough over ``take_events(100)`` batches; ``count-groupby`` counts
after ``group_by`` (a repartition topic, inside the transaction); ``count-repartition``
is the same written by hand (an agent sends to a topic keyed by the new key, a second
agent counts). ``count-tumbling`` / ``count-hopping`` (also run by the peers) count in a
windowed table (1 s windows, hopping every 0.5 s, expires 10 s) and emit, per input, each
window's start and count.

    eoflow worker -A bench.apps.eoflow_app --broker kafka://127.0.0.1:PORT --datadir DIR
"""

from __future__ import annotations

from typing import Any

import eoflow
from bench.apps import _common as c

app = eoflow.App(
    c.APP_ID,
    broker=f"kafka://{c.BOOTSTRAP}",
    processing_guarantee=c.GUARANTEE,  # type: ignore[arg-type]
    commit_interval=c.INTERVAL,
    datadir=c.DATADIR,
    topic_partitions=c.PARTITIONS,
)
source = app.topic(c.IN_TOPIC, partitions=c.PARTITIONS, key_serializer="str",
                   value_serializer="json")
out = app.topic(c.OUT_TOPIC, partitions=c.PARTITIONS, key_serializer="str",
                value_serializer="json")

def regroup(value: dict[str, Any]) -> str:
    """The key a group_by moves a record to (a different key than the input's)."""
    return f"g{value['i'] % 1000}"


if c.WORKLOAD == "passthrough":

    @app.agent(source, name="passthrough")
    async def passthrough(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for k, v in stream.items():
            await out.send(key=k, value=c.passthrough(v))

elif c.WORKLOAD == "take100":

    @app.agent(source, name="take100")
    async def take100(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for batch in stream.take_events(100, within=0.01):
            for event in batch:
                await out.send(key=event.key, value=c.passthrough(event.value))

elif c.WORKLOAD == "count-groupby":
    by_group = app.Table("by-group", default=int, partitions=c.PARTITIONS)

    @app.agent(source, name="groupby")
    async def count_groups(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for v in stream.group_by(regroup, name="group"):
            key = regroup(v)
            by_group[key] += 1
            await out.send(key=key, value=c.counted(v, by_group[key]))

elif c.WORKLOAD == "count-repartition":
    regrouped = app.topic(f"{c.APP_ID}-by-group", partitions=c.PARTITIONS,
                          key_serializer="str", value_serializer="json")
    by_group = app.Table("by-group", default=int, partitions=c.PARTITIONS)

    @app.agent(source, name="repartition")
    async def repartition(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for v in stream:
            await regrouped.send(key=regroup(v), value=v)

    @app.agent(regrouped, name="count-groups")
    async def count_regrouped(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for key, v in stream.items():
            by_group[key] += 1
            await out.send(key=key, value=c.counted(v, by_group[key]))

elif c.WINDOWED:
    base = app.Table("windows", default=int, partitions=c.PARTITIONS)
    windows = (base.tumbling(c.WINDOW_SIZE, expires=c.WINDOW_EXPIRES) if c.TUMBLING else
               base.hopping(c.WINDOW_SIZE, c.WINDOW_STEP, expires=c.WINDOW_EXPIRES))
    spec = windows.spec

    @app.agent(source, name="windowed")
    async def count_windows(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for event in stream.events():
            k = event.key
            windows[k] += 1
            per_key = windows[k]
            for w in spec.windows(event.timestamp / 1000):
                await out.send(key=k, value=c.windowed(round(w.start * 1000), per_key[w]))

else:
    counts = app.Table("counts", default=int, partitions=c.PARTITIONS)

    @app.agent(source, name="count")
    async def count(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for k, v in stream.items():
            counts[k] += 1
            await out.send(key=k, value=c.counted(v, counts[k]))
