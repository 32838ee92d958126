"""faust-streaming: processing_guarantee from BENCH_GUARANTEE, RocksDB store via rocksdict.

count-tumbling: a windowed table (``.tumbling(1.0, expires=10.0)``) on the message
timestamp. No count-hopping: faust-streaming 0.15's HoppingWindow.ranges() steps with
``range(int(start), int(timestamp) + 1, int(step))``, so a 0.5 s step raises
``ValueError: range() arg 3 must not be zero`` on the first record.

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

elif c.TUMBLING:
    windows = app.Table("windows", default=int, partitions=c.PARTITIONS).tumbling(
        c.WINDOW_SIZE, expires=c.WINDOW_EXPIRES)
    spec = windows.table.window

    @app.agent(source)
    async def count_windows(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            key = event.key.decode()
            windows[key] += 1
            start = spec.current(event.message.timestamp)[0]
            await out.send(key=event.key,
                           value=c.windowed(round(start * 1000), windows[key].current()))

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
