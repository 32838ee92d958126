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
else:

    def count(value: dict[str, Any], state: State) -> dict[str, Any]:
        n = state.get("count", 0) + 1
        state.set("count", n)
        return c.counted(value, n)

    sdf = sdf.apply(count, stateful=True)

sdf.to_topic(out)

if __name__ == "__main__":
    app.run()
