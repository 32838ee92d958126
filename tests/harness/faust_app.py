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

import asyncio
import os
from typing import Any

import faust


def _env(name: str, default: str) -> str:
    return os.environ.get(f"EO_{name}", default)


APP_ID = _env("APP_ID", "eo-harness")
PREFIX = _env("PREFIX", APP_ID)
PARTITIONS = int(_env("PARTITIONS", "4"))
DELAY = float(_env("DELAY", "0"))
SLOW_SECONDS = float(_env("SLOW_SECONDS", "0"))
LARGE_BYTES = int(_env("LARGE_BYTES", str(2 * 1024 * 1024)))
SESSION_TIMEOUT = float(_env("SESSION_TIMEOUT", "6.0"))

app = faust.App(
    APP_ID,
    broker=_env("BROKER", "kafka://127.0.0.1:9092"),
    processing_guarantee="exactly_once",
    store="rocksdb://",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    broker_commit_interval=float(_env("COMMIT_INTERVAL", "0.1")),
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
_slowed: set[int] = set()  # ids of "slow": "once" inputs already slowed in this process


def fold(agg: dict[str, int], n: int) -> dict[str, int]:
    """One step of the per-key aggregate (a copy of ``eo_app.fold``, which imports eoflow)."""
    if not agg:
        return {"sum": n, "count": 1, "min": n, "max": n}
    return {"sum": agg["sum"] + n, "count": agg["count"] + 1,
            "min": min(agg["min"], n), "max": max(agg["max"], n)}


def _str(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


@app.agent(inputs, name="ingest")
async def ingest(stream: Any) -> None:
    async for event in stream.events():
        value = event.value
        if DELAY:
            await asyncio.sleep(DELAY)
        if value.get("raise"):
            raise RuntimeError(f"poison input {value['id']}")
        if value.get("slow") is True or (value.get("slow") == "once"
                                         and value["id"] not in _slowed):
            _slowed.add(value["id"])
            await asyncio.sleep(SLOW_SECONDS)
        partition, offset = event.message.partition, event.message.offset
        out = {"id": value["id"], "key": value["key"], "n": value["n"],
               "p": partition, "o": offset}
        if value.get("large"):
            out["pad"] = "x" * LARGE_BYTES
        await echo.send(key=_str(event.key), value=out)
        await by_key.send(key=value["key"], value={"id": value["id"], "n": value["n"],
                                                   "src": [partition, offset]})


@app.agent(by_key, name="aggregate")
async def aggregate(stream: Any) -> None:
    async for key, value in stream.items():
        key = _str(key)
        agg = fold(aggs[key], value["n"])
        aggs[key] = agg
        await aggregates.send(key=key, value={"id": value["id"], "src": value["src"], **agg})
