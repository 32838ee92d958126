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

Patterns users write, switched on by environment:

* ``EO_SPAWN=1``          -- ``ingest`` sends through tasks it spawns and awaits (gather);
* ``EO_OUTSIDE_WRITES=1`` -- a background task outside any event keeps trying to write the
  table; every try must be refused (it prints ``eo_app: outside write refused`` once).

Run it with ``eoflow worker -A tests.harness.eo_app --datadir DIR --instance-id ID``.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import sys
from types import FrameType
from typing import Any

import eoflow

from .app_common import (
    APP_ID,
    EOFLOW_SETTINGS,
    PARTITIONS,
    PREFIX,
    act_on_marks,
    aggregate_value,
    by_key_value,
    echo_value,
    env,
    fold,
)

app = eoflow.App(APP_ID, **EOFLOW_SETTINGS)

inputs = app.topic(f"{PREFIX}-input", partitions=PARTITIONS, key_serializer="str")
echo = app.topic(f"{PREFIX}-echo", partitions=PARTITIONS, key_serializer="str")
by_key = app.topic(f"{PREFIX}-by-key", partitions=PARTITIONS, key_serializer="str")
aggregates = app.topic(f"{PREFIX}-aggregates", partitions=PARTITIONS, key_serializer="str")
aggs: eoflow.Table[str, dict[str, int]] = app.Table("aggs", default=dict, partitions=PARTITIONS)


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


SPAWN = env("SPAWN", "") == "1"
OUTSIDE_WRITES = env("OUTSIDE_WRITES", "") == "1"
_writer: list[asyncio.Task[None]] = []


@app.agent(inputs, name="ingest")
async def ingest(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
    async for event in stream.events():
        value = event.value
        await act_on_marks(value)
        outputs = (echo.send(key=event.key, value=echo_value(value, event.partition,
                                                              event.offset)),
                   by_key.send(key=value["key"],
                               value=by_key_value(value, event.partition, event.offset)))
        if SPAWN:
            await asyncio.gather(*(asyncio.create_task(o) for o in outputs))
        else:
            for output in outputs:
                await output


async def _write_outside_events() -> None:
    """Keep trying to write every table partition from outside any event."""
    refused = False
    while True:
        for partition in range(PARTITIONS):
            try:
                aggs.partition(partition)["ghost"] = {"sum": 1, "count": 1, "min": 1, "max": 1}
            except (eoflow.errors.TableUsageError, eoflow.errors.ConfigurationError):
                if not refused:
                    refused = True
                    print("eo_app: outside write refused", file=sys.stderr, flush=True)
        await asyncio.sleep(0.005)


@app.agent(by_key, name="aggregate")
async def aggregate(stream: eoflow.Stream[str, dict[str, Any]]) -> None:
    if OUTSIDE_WRITES and not _writer:  # a task of no agent, no event: an empty context
        _writer.append(asyncio.get_running_loop().create_task(
            _write_outside_events(), context=contextvars.Context()))
    async for key, value in stream.items():
        agg = fold(aggs[key], value["n"])
        aggs[key] = agg
        await aggregates.send(key=key, value=aggregate_value(value, agg))
