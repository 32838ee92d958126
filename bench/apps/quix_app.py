"""Quix Streams: processing_guarantee="exactly-once", its RocksDB state store.

    python -m bench.apps.quix_app
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application, State

from bench.apps import _common as c

app = Application(
    broker_address=c.BOOTSTRAP,
    consumer_group=c.APP_ID,
    processing_guarantee="exactly-once" if c.GUARANTEE == "exactly_once" else "at-least-once",
    commit_interval=c.INTERVAL,
    auto_offset_reset="earliest",
    state_dir=c.DATADIR,
    loglevel="WARNING",
)
source = app.topic(c.IN_TOPIC, key_deserializer="str", value_deserializer="json")
out = app.topic(c.OUT_TOPIC, key_serializer="str", value_serializer="json")
sdf = app.dataframe(source)

if c.WORKLOAD == "passthrough":
    sdf = sdf.apply(c.passthrough)
elif c.WINDOWED:
    size, step = round(c.WINDOW_SIZE * 1000), round(c.WINDOW_STEP * 1000)
    sdf = sdf.update(c.seen)
    # Grace 0 as for the others; Quix has no separate expiry: it deletes a window once it
    # closes (the others keep it WINDOW_EXPIRES s longer). The input is in time order per
    # partition, so no record is late either way.
    window = (sdf.tumbling_window(size) if c.TUMBLING else sdf.hopping_window(size, step))
    sdf = window.count().current().apply(lambda w: c.windowed(w["start"], w["value"]))
else:

    def count(value: dict[str, Any], state: State) -> dict[str, Any]:
        n = state.get("count", 0) + 1
        state.set("count", n)
        return c.counted(value, n)

    sdf = sdf.apply(count, stateful=True)

sdf.to_topic(out)

if __name__ == "__main__":
    app.run()
