"""Does a windowed table's store stay bounded on an endless stream? (issue 11)

    .venv/bin/python -m bench.window_store [EVENTS] [--keys K] [--kind KIND]

A tumbling 1 s window with ``expires=10`` counts events of ``K`` keys (default 100); event
time advances 1 ms per event, so 2,000,000 events span 2,000 s of event time and 2,000
windows per key. The events go through the broker-less TestDriver in chunks, with the
real RocksDB store; after each chunk it prints the windows the committed table holds,
the keys in the RocksDB store and the store's size on disk. Expiry deletes a window once
stream time passes its end plus ``expires``: the window count must level off at about
(size + expires) / size x keys, whatever the number of events.

``--kind sliding``: a 1 s sliding window with ``expires=10`` instead. It stores one
contribution per event time of a key (here every 100 ms per key) and deletes it once stream
time passes its time + size + expires: the count levels off at about 11 s / 100 ms = 110
per key. ``--kind session`` (gap 0.2 s): each key's events never pause, so each key has one
session that keeps growing: one window per key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

import eoflow
from eoflow._transport.batching import default_partition
from eoflow.testing import TestDriver

PARTITIONS = 2
CHUNK = 200_000
T0 = 1_700_000_000.0


def build(kind: str) -> eoflow.App:
    app = eoflow.App(f"wstore-{uuid.uuid4().hex[:6]}")
    clicks = app.topic("clicks", partitions=PARTITIONS, key_serializer="str")
    table = app.Table("views", default=int, partitions=PARTITIONS)
    views = (table.tumbling(1.0, expires=10.0) if kind == "tumbling" else
             table.sliding(1.0, expires=10.0) if kind == "sliding" else
             table.session(0.2, expires=10.0))

    @app.agent(clicks, name="count")
    async def count(stream: eoflow.Stream[str, object]) -> None:
        async for user, _ in stream.items():
            views[user] += 1

    return app


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def by_kind(root: Path) -> str:
    """Disk bytes by RocksDB file kind: .sst (tables), .log (write-ahead log), the rest."""
    sizes: dict[str, int] = {}
    for p in root.rglob("*"):
        if p.is_file():
            kind = p.suffix if p.suffix in (".sst", ".log") else "other"
            sizes[kind] = sizes.get(kind, 0) + p.stat().st_size
    return " ".join(f"{k}={v / 1e6:.1f}MB" for k, v in sorted(sizes.items()))


async def main(events: int, keys: int, kind: str) -> None:
    app = build(kind)
    driver = TestDriver(app, commit_interval=0.1)
    driver.broker.create_topic("clicks", PARTITIONS, {})
    datadir = Path(driver.settings.datadir)
    print(f"{'events':>10} {'event time s':>12} {'windows':>8} {'disk MB':>8} {'events/s':>9}")
    async with driver:
        sent = 0
        while sent < events:
            n = min(CHUNK, events - sent)
            started = time.perf_counter()
            for i in range(sent, sent + n):
                key = f"u{i % keys}".encode()
                stamp = round((T0 + i / 1000) * 1000)
                driver.broker.append(None, 0, "clicks", default_partition(key, PARTITIONS),
                                     [(key, json.dumps({"i": i}).encode(), stamp, ())])
            await driver.settle(timeout=3600)
            sent += n
            rate = n / (time.perf_counter() - started)
            windows = len(driver.table("views"))
            print(f"{sent:>10} {sent / 1000:>12.0f} {windows:>8} "
                  f"{disk_bytes(datadir) / 1e6:>8.1f} {rate:>9.0f}  {by_kind(datadir)}",
                  flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int, nargs="?", default=2_000_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--kind", choices=["tumbling", "sliding", "session"],
                        default="tumbling")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.keys, args.kind))
