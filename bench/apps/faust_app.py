"""faust-streaming: processing_guarantee="exactly_once", RocksDB store via rocksdict.

    python -m bench.apps.faust_app worker -l warning
"""

from __future__ import annotations

import faust

from bench.apps import _common as c

app = faust.App(
    c.APP_ID,
    broker=f"kafka://{c.BOOTSTRAP}",
    processing_guarantee=c.GUARANTEE,
    store="rocksdb://",
    datadir=c.DATADIR,
    topic_partitions=c.PARTITIONS,
    # Commit on the interval only (Faust also commits every N records: disable that).
    broker_commit_interval=c.INTERVAL,
    broker_commit_every=10**9,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)
source = app.topic(c.IN_TOPIC, key_serializer="raw", value_serializer="json",
                   partitions=c.PARTITIONS)
out = app.topic(c.OUT_TOPIC, key_serializer="raw", value_serializer="json",
                partitions=c.PARTITIONS)

if c.WORKLOAD == "passthrough":

    @app.agent(source)
    async def passthrough(stream):  # type: ignore[no-untyped-def]
        async for k, v in stream.items():
            await out.send(key=k, value=c.passthrough(v))

else:
    counts = app.Table("counts", default=int, partitions=c.PARTITIONS)

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for k, v in stream.items():
            key = k.decode()
            counts[key] += 1
            await out.send(key=k, value=c.counted(v, counts[key]))


if __name__ == "__main__":
    app.main()
