"""The harness app (see ``eo_app``) written for faust-streaming, configured by ``EO_*``.

The same topology, topic names, key/value shapes and input marks as ``eo_app``, so that
the same driver, watcher and oracle judge faust-streaming in ``exactly_once`` mode:
``input`` -> ``ingest`` -> ``echo`` and ``by-key`` -> ``aggregate`` -> table ``aggs``
(changelog ``{app_id}-aggs-changelog``, JSON keys and values) and ``aggregates``.

Faust has no dead-letter topic, no transaction-timeout setting (aiokafka's 60 s default
applies) and no fault points, so the marks act as plain code here: ``raise`` raises in
the agent (faust logs it and restarts the agent), ``slow`` sleeps ``EO_SLOW_SECONDS``,
``large`` emits an ``EO_LARGE_BYTES`` echo record. What faust does then is the finding.

Run it (in the bench venv, with the repository on PYTHONPATH) with::

    faust -A tests.harness.faust_app --datadir DIR worker -l info --web-port PORT

The store is ``rocksdb://``, which faust-streaming 0.15 backs with rocksdict when
python-rocksdb is absent (there is no ``rocksdict://`` scheme).
"""

from __future__ import annotations

from typing import Any

import faust

from .app_common import (
    APP_ID,
    BROKER,
    COMMIT_INTERVAL,
    PARTITIONS,
    PREFIX,
    SESSION_TIMEOUT,
    act_on_marks,
    aggregate_value,
    by_key_value,
    echo_value,
    fold,
)

app = faust.App(
    APP_ID,
    broker=BROKER,
    processing_guarantee="exactly_once",
    store="rocksdb://",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    broker_commit_interval=COMMIT_INTERVAL,
    broker_session_timeout=SESSION_TIMEOUT,
    broker_heartbeat_interval=max(0.5, SESSION_TIMEOUT / 3),
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)

inputs = app.topic(f"{PREFIX}-input", partitions=PARTITIONS, key_serializer="raw",
                   value_serializer="json")
echo = app.topic(f"{PREFIX}-echo", partitions=PARTITIONS, key_serializer="raw",
                 value_serializer="json")
by_key = app.topic(f"{PREFIX}-by-key", partitions=PARTITIONS, key_serializer="raw",
                   value_serializer="json")
aggregates = app.topic(f"{PREFIX}-aggregates", partitions=PARTITIONS, key_serializer="raw",
                       value_serializer="json")
# JSON keys and values in the changelog, like eoflow's (the oracle decodes both as JSON).
aggs = app.Table("aggs", default=dict, partitions=PARTITIONS,
                 schema=faust.Schema(key_serializer="json", value_serializer="json"))


def _str(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


@app.agent(inputs, name="ingest")
async def ingest(stream: Any) -> None:
    async for event in stream.events():
        value = event.value
        await act_on_marks(value)
        partition, offset = event.message.partition, event.message.offset
        await echo.send(key=_str(event.key), value=echo_value(value, partition, offset))
        await by_key.send(key=value["key"], value=by_key_value(value, partition, offset))


@app.agent(by_key, name="aggregate")
async def aggregate(stream: Any) -> None:
    async for key, value in stream.items():
        key = _str(key)
        agg = fold(aggs[key], value["n"])
        aggs[key] = agg
        await aggregates.send(key=key, value=aggregate_value(value, agg))
