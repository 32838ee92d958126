"""eoflow: passthrough or stateful count (BENCH_WORKLOAD), guarantee from BENCH_GUARANTEE.

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

if c.WORKLOAD == "passthrough":

    @app.agent(source, name="passthrough")
    async def passthrough(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for k, v in stream.items():
            await out.send(key=k, value=c.passthrough(v))

else:
    counts = app.Table("counts", default=int, partitions=c.PARTITIONS)

    @app.agent(source, name="count")
    async def count(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
        async for k, v in stream.items():
            counts[k] += 1
            await out.send(key=k, value=c.counted(v, counts[k]))
