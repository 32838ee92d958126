"""CPU per table operation inside an agent, without a broker (issues 11 and 16).

    .venv/bin/python -m bench.table_ops [--events N] [--ops K] [--rounds R]

(``PYTHONPATH=<a worktree>`` in front times that checkout's eoflow instead.)

Runs the real worker (barrier, overlays, commit) over the in-memory transport of
``eoflow.testing`` and times, per consumed event, ``K`` repetitions of one operation:

  count-write:  ``counts[k] += 1``                     (a plain table: a read and a write)
  count-read:   ``counts[k]``
  window-write: ``windows[k] += 1``                    (a 1 s tumbling table)
  window-read:  ``windows[k][w]`` for the event's window
  none:         an empty loop (the per-event cost of everything else)

and prints CPU µs per event and per operation (net of ``none``). Rounds alternate the
operations, so a machine that slows down meanwhile slows all of them. The numbers compare
code changes on one machine; they are not throughput (no broker, no network).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

import orjson

import eoflow
from eoflow._transport.batching import default_partition
from eoflow.testing import TestDriver

OPS = ["none", "count-write", "count-read", "window-write", "window-read"]
PARTITIONS = 8
KEYS = 10_000


def build(op: str, repeat: int) -> eoflow.App:
    app = eoflow.App(f"table-ops-{op}", broker="kafka://localhost:1")
    source = app.topic("in", partitions=PARTITIONS, key_serializer="str",
                       value_serializer="json")
    counts = app.Table("counts", default=int, partitions=PARTITIONS)
    windows = app.Table("windows", default=int, partitions=PARTITIONS).tumbling(
        1.0, expires=10.0)
    spec = windows.spec

    @app.agent(source, name="ops")
    async def ops(stream: eoflow.Stream[str, Any]) -> None:
        async for event in stream.events():
            k = event.key
            counts[k] += 1
            windows[k] += 1
            if op == "count-write":
                for _ in range(repeat):
                    counts[k] += 1
            elif op == "count-read":
                for _ in range(repeat):
                    counts[k]
            elif op == "window-write":
                for _ in range(repeat):
                    windows[k] += 1
            elif op == "window-read":
                per_key = windows[k]
                for _ in range(repeat):
                    for w in spec.windows(event.timestamp / 1000):
                        per_key[w]
            else:
                for _ in range(repeat):
                    pass

    return app


async def one(op: str, events: int, repeat: int) -> float:
    """CPU µs per event of ``events`` events, each doing ``op`` ``repeat`` times."""
    driver = TestDriver(build(op, repeat), commit_interval=1.0)
    by_partition: dict[int, list[Any]] = {}
    base_ms = 1_700_000_000_000
    for i in range(events):
        key = f"k{i % KEYS}".encode()
        value = orjson.dumps({"id": i, "pad": "x" * 100})
        by_partition.setdefault(default_partition(key, PARTITIONS), []).append(
            (key, value, base_ms + i // 60, ()))  # 60,000 events per second of event time
    await driver.start()
    try:
        gc.collect()
        started = time.process_time()
        for partition, records in by_partition.items():
            driver.broker.append(None, 0, "in", partition, records)
        await driver.settle(timeout=600)
        return (time.process_time() - started) * 1e6 / events
    finally:
        await driver.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--ops", type=int, default=20, help="operations per event")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {op: [] for op in OPS}
    for _ in range(args.rounds):
        for op in OPS:
            runs[op].append(asyncio.run(one(op, args.events, args.ops)))
    base = statistics.median(runs["none"])
    print(f"{args.events} events, {args.ops} operations per event, {args.rounds} rounds "
          "(CPU µs, median)")
    print(f"{'operation':14s} {'per event':>10s} {'per operation':>14s}   rounds")
    for op in OPS:
        median = statistics.median(runs[op])
        per_op = "" if op == "none" else f"{(median - base) / args.ops:.2f}"
        print(f"{op:14s} {median:10.1f} {per_op:>14s}   "
              + " ".join(f"{x:.1f}" for x in runs[op]))


if __name__ == "__main__":
    main()
