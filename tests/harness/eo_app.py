"""The app under test, configured entirely by environment variables (``EO_*``).

``input`` (JSON ``{"id", "key", "n", ...}``) -> ``ingest`` -> ``echo`` (same key, plus the
input partition/offset) and ``by-key`` (keyed by the ``key`` field) -> ``aggregate`` ->
table ``aggs`` (per key: sum, count, min, max) and ``aggregates`` (running aggregate + id).

Marks on an input value drive the fault scenarios:

* ``"raise": true``  -- ``ingest`` always raises on it (the record must end in the DLQ);
* ``"slow": true``   -- ``ingest`` sleeps ``EO_SLOW_SECONDS`` on it (slower than the
  transaction timeout: the interval must abort and the record end in the DLQ);
* ``"slow": "once"`` -- the same, on the first attempt in this process only (the interval
  aborts once, then the input is processed normally, exactly once);
* ``"large": true``  -- ``ingest`` emits an ``EO_LARGE_BYTES`` echo record (larger than the
  broker's max.message.bytes: the transaction must abort, never commit with a gap).

Run it with ``eoflow worker -A tests.harness.eo_app --datadir DIR --instance-id ID``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType
from typing import Any

import eoflow


def _env(name: str, default: str) -> str:
    return os.environ.get(f"EO_{name}", default)


APP_ID = _env("APP_ID", "eo-harness")
PREFIX = _env("PREFIX", APP_ID)
PARTITIONS = int(_env("PARTITIONS", "4"))
DELAY = float(_env("DELAY", "0"))
SLOW_SECONDS = float(_env("SLOW_SECONDS", "0"))
LARGE_BYTES = int(_env("LARGE_BYTES", str(2 * 1024 * 1024)))

app = eoflow.App(
    APP_ID,
    broker=_env("BROKER", "kafka://127.0.0.1:9092"),
    commit_interval=float(_env("COMMIT_INTERVAL", "0.1")),
    session_timeout=float(_env("SESSION_TIMEOUT", "6.0")),
    transaction_timeout=float(_env("TXN_TIMEOUT", "20.0")),
    max_retries=int(_env("MAX_RETRIES", "3")),
)

inputs = app.topic(f"{PREFIX}-input", partitions=PARTITIONS, key_serializer="str")
echo = app.topic(f"{PREFIX}-echo", partitions=PARTITIONS, key_serializer="str")
by_key = app.topic(f"{PREFIX}-by-key", partitions=PARTITIONS, key_serializer="str")
aggregates = app.topic(f"{PREFIX}-aggregates", partitions=PARTITIONS, key_serializer="str")
aggs: eoflow.Table[str, dict[str, int]] = app.Table("aggs", default=dict, partitions=PARTITIONS)
_slowed: set[int] = set()  # ids of "slow": "once" inputs already slowed in this process


def _dump_tasks(signum: int, frame: FrameType | None) -> None:
    """SIGUSR1: print every asyncio task's stack (the harness does it to a hung worker)."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        return
    print(f"eo_app: {len(tasks)} asyncio tasks", file=sys.stderr)
    for task in tasks:
        task.print_stack(limit=12, file=sys.stderr)


signal.signal(signal.SIGUSR1, _dump_tasks)


def fold(agg: dict[str, int], n: int) -> dict[str, int]:
    """One step of the per-key aggregate (the oracle uses the same function)."""
    if not agg:
        return {"sum": n, "count": 1, "min": n, "max": n}
    return {"sum": agg["sum"] + n, "count": agg["count"] + 1,
            "min": min(agg["min"], n), "max": max(agg["max"], n)}


@app.agent(inputs, name="ingest")
async def ingest(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
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
        out = {"id": value["id"], "key": value["key"], "n": value["n"],
               "p": event.partition, "o": event.offset}
        if value.get("large"):
            out["pad"] = "x" * LARGE_BYTES
        await echo.send(key=event.key, value=out)
        await by_key.send(key=value["key"], value={"id": value["id"], "n": value["n"],
                                                   "src": [event.partition, event.offset]})


@app.agent(by_key, name="aggregate")
async def aggregate(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
    async for key, value in stream.items():
        agg = fold(aggs[key], value["n"])
        aggs[key] = agg
        await aggregates.send(key=key, value={"id": value["id"], "src": value["src"], **agg})
