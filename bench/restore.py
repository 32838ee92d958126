"""Table restore benchmark (issue 4): restore rate and start-to-first-event.

1. Fills the changelog of table ``counts`` with N keys (json key -> json int) over 8
   partitions, in transactions of 50,000 records, like a worker would.
2. Restore rate: restores every partition into an empty RocksDB store, timed.
3. Start-to-first-event: starts a worker whose local stores are current (the ones just
   restored), produces one input, and times worker start -> first event in the agent.
   Done for the large table and for a small one: with a current store the time should
   not depend on the table size (only the stored offset -> LSO tail is read).

    python bench/restore.py --keys 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402

import eoflow  # noqa: E402
from eoflow._state import RocksDBPartitionStore, StoreIdentity, store_path  # noqa: E402
from eoflow._transport.admin import TopicSpec, ensure_topics  # noqa: E402
from eoflow.testing import (  # noqa: E402
    produce,
    restore_partition,
    running,
)
from tools.kafka.kafkactl import KafkaBroker  # noqa: E402

PARTITIONS = 8


async def fill_changelog(bootstrap: str, topic: str, keys: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"fill-{topic}",
                                linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        per_txn = 50_000
        for start in range(0, keys, per_txn):
            async with producer.transaction():
                for i in range(start, min(keys, start + per_txn)):
                    await producer.send(topic, key=json.dumps(f"key-{i}").encode(),
                                        value=json.dumps(i).encode(),
                                        partition=i % PARTITIONS)
    finally:
        await producer.stop()


async def restore_all(bootstrap: str, app_id: str, topic: str, datadir: Path) -> tuple[int, float]:
    records, started = 0, time.perf_counter()
    for p in range(PARTITIONS):
        identity = StoreIdentity(app_id, "counts", p, PARTITIONS)
        store = RocksDBPartitionStore.open(store_path(datadir, "counts", p), identity)
        try:
            stats = await restore_partition(bootstrap, TopicPartition(topic, p), store)
            records += stats.records
        finally:
            store.close()
    return records, time.perf_counter() - started


async def first_event_seconds(bootstrap: str, app_id: str, datadir: Path) -> float:
    app = eoflow.App(app_id, broker=f"kafka://{bootstrap}", datadir=datadir,
                     commit_interval=0.1)
    src = app.topic(f"{app_id}-in", partitions=PARTITIONS, key_serializer="json")
    counts = app.Table("counts", default=int, partitions=PARTITIONS)
    seen = asyncio.Event()

    @app.agent(src)
    async def count(stream: eoflow.Stream[str, int]) -> None:
        async for key, _ in stream.items():
            counts[key] += 1
            seen.set()

    await ensure_topics(bootstrap, [TopicSpec(src.name, PARTITIONS)], 1)
    await produce(bootstrap, src.name, [(b'"key-1"', b"1")])
    started = time.perf_counter()
    async with running(app):
        await asyncio.wait_for(seen.wait(), 300)
        return time.perf_counter() - started


async def scenario(bootstrap: str, keys: int, workdir: Path) -> dict[str, float]:
    app_id = f"restore-{keys}"
    topic = f"{app_id}-counts-changelog"
    await ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS, {"cleanup.policy": "compact"})], 1)
    t0 = time.perf_counter()
    await fill_changelog(bootstrap, topic, keys)
    fill = time.perf_counter() - t0
    records, seconds = await restore_all(bootstrap, app_id, topic, workdir / app_id)
    first = await first_event_seconds(bootstrap, app_id, workdir / app_id)
    return {"keys": keys, "fill_s": fill, "restored": records, "restore_s": seconds,
            "rate": records / seconds, "first_event_s": first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("eoflow").setLevel(logging.INFO)
    workdir = Path(tempfile.mkdtemp(prefix="eoflow-restore-bench-"))
    broker = KafkaBroker(datadir=workdir / "kafka", heap="1g").start()
    try:
        rows = [asyncio.run(scenario(broker.bootstrap, n, workdir))
                for n in (args.small, args.keys)]
    finally:
        broker.stop()
    print(f"{'keys':>10} {'restored':>10} {'restore s':>10} {'records/s':>10} "
          f"{'start->first event s':>22}")
    for r in rows:
        print(f"{r['keys']:>10,} {r['restored']:>10,} {r['restore_s']:>10.2f} "
              f"{r['rate']:>10,.0f} {r['first_event_s']:>22.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
