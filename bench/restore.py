"""Table restore benchmark (issues 4 and 16): eoflow against Kafka Streams.

Restore rate and start-to-first-event for a count table, for each table size N (--small,
then --keys) and each system, on one broker, the same N and 8 partitions:

1. Fill the table's changelog with N keys over 8 partitions (key i in partition i % 8) in
   transactions of 50,000 records, in the system's format: eoflow table ``counts`` (JSON
   key -> JSON int); Kafka Streams store ``counts`` of a ``groupByKey().count()`` (UTF-8 key
   -> 8-byte big-endian long, its Long serde; bench/kstreams KStreamsRestore.java).
2. eoflow only: restore every partition into an empty RocksDB store with
   ``eoflow.testing.restore_partition``, timed (the restore alone, without a worker).
3. Empty store: produce one input, start the app with an empty data (state) dir and time
   start -> first event. The restore inside that start is timed too: eoflow's worker logs
   one "Restored changelog" line per partition (records and seconds, summed here; it
   restores the partitions one after the other); Kafka Streams' StateRestoreListener
   gives the first restore start -> last restore end. "ready" is when every partition is
   restored: eoflow's ``running(app)`` yields, Kafka Streams' state is RUNNING. eoflow
   dispatches no event before that; Kafka Streams 3.9 restores on its state updater
   thread and processes a task as soon as its own stores are restored, so its first event
   can come before its ready (KStreamsRestore waits for both before it closes).
4. Current store: the app of step 3 stopped cleanly; produce one more input and start it
   again with the same dir. Only the stored offset -> end tail is read, so the time should
   not depend on N. Kafka Streams runs steps 3 and 4 as a static group member
   (``group.instance.id``): it does not leave the group when it closes
   (``internal.leave.group.on.close=false``), so a dynamic member's restart waits for the
   closed member's session timeout (45 s). A third start, without an instance id, measures
   that default restart.

Start is ``running(app)`` (eoflow, in this process) and ``streams.start()`` (Kafka
Streams, inside its JVM): neither counts the runtime's own start (Python imports, JVM);
"launch" is the Kafka Streams process launch -> first event, JVM start included.

    python bench/restore.py --keys 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402

import eoflow  # noqa: E402
from bench import kstreams_build  # noqa: E402
from eoflow._state import RocksDBPartitionStore, StoreIdentity, store_path  # noqa: E402
from eoflow._transport.admin import TopicSpec, ensure_topics  # noqa: E402
from eoflow.testing import (  # noqa: E402
    produce,
    restore_partition,
    running,
)
from tools.kafka.kafkactl import KafkaBroker  # noqa: E402

PARTITIONS = 8
SYSTEMS = ("eoflow", "kstreams")
KSTREAMS_MAIN = "io.eoflow.bench.KStreamsRestore"
Encode = Callable[[int], tuple[bytes, bytes]]


def eoflow_record(i: int) -> tuple[bytes, bytes]:
    return json.dumps(f"key-{i}").encode(), json.dumps(i).encode()


def kstreams_record(i: int) -> tuple[bytes, bytes]:
    return f"key-{i}".encode(), struct.pack(">q", i)


async def fill_changelog(bootstrap: str, topic: str, keys: int, encode: Encode) -> float:
    await ensure_topics(bootstrap, [TopicSpec(topic, PARTITIONS, {"cleanup.policy": "compact"})],
                        1)
    started = time.perf_counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"fill-{topic}",
                                linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        per_txn = 50_000
        for start in range(0, keys, per_txn):
            async with producer.transaction():
                for i in range(start, min(keys, start + per_txn)):
                    key, value = encode(i)
                    await producer.send(topic, key=key, value=value, partition=i % PARTITIONS)
    finally:
        await producer.stop()
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ eoflow

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


class RestoredLines(logging.Handler):
    """Sums the worker's "Restored changelog <topic>[p]: N records in S s" log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records, self.seconds = 0, 0.0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if (isinstance(record.msg, str) and record.msg.startswith("%s changelog %s:")
                and isinstance(args, tuple) and args[0] == "Restored"):
            self.records += int(args[2])
            self.seconds += float(args[3])


async def eoflow_start(bootstrap: str, app_id: str, datadir: Path, key: bytes,
                       consumer_options: dict[str, Any]) -> dict[str, Any]:
    """Produce one input, start a worker on ``datadir``; time start -> first event."""
    app = eoflow.App(app_id, broker=f"kafka://{bootstrap}", datadir=datadir,
                     commit_interval=0.1, consumer_options=consumer_options)
    src = app.topic(f"{app_id}-in", partitions=PARTITIONS, key_serializer="json")
    counts = app.Table("counts", default=int, partitions=PARTITIONS)
    seen = asyncio.Event()

    @app.agent(src)
    async def count(stream: eoflow.Stream[str, int]) -> None:
        async for k, _ in stream.items():
            counts[k] += 1
            seen.set()

    await ensure_topics(bootstrap, [TopicSpec(src.name, PARTITIONS)], 1)
    await produce(bootstrap, src.name, [(key, b"1")])
    lines = RestoredLines()
    logging.getLogger("eoflow").addHandler(lines)
    try:
        started = time.perf_counter()
        async with running(app, ready_timeout=900):
            ready = time.perf_counter() - started
            await asyncio.wait_for(seen.wait(), 300)
            first = time.perf_counter() - started
    finally:
        logging.getLogger("eoflow").removeHandler(lines)
    return {"first_event_s": first, "ready_s": ready, "restored": lines.records,
            "restore_s": lines.seconds}


async def eoflow_scenario(bootstrap: str, keys: int, app_id: str, workdir: Path,
                          consumer_options: dict[str, Any]) -> dict[str, Any]:
    topic = f"{app_id}-counts-changelog"
    fill = await fill_changelog(bootstrap, topic, keys, eoflow_record)
    records, seconds = await restore_all(bootstrap, app_id, topic, workdir / "standalone")
    empty = await eoflow_start(bootstrap, app_id, workdir / "worker", b'"key-1"',
                               consumer_options)
    current = await eoflow_start(bootstrap, app_id, workdir / "worker", b'"key-2"',
                                 consumer_options)
    return {"system": "eoflow", "keys": keys, "fill_s": fill, "options": consumer_options,
            "standalone": {"restored": records, "restore_s": seconds}, "empty": empty,
            "current": current}


# ------------------------------------------------------------------------ Kafka Streams

def kstreams_start(bootstrap: str, app_id: str, state_dir: Path, log: Path,
                   instance: str) -> dict[str, Any]:
    """One KStreamsRestore process: its JSON line, plus launch -> first event."""
    env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_APP_ID": app_id,
           "BENCH_IN": f"{app_id}-in", "BENCH_DATADIR": str(state_dir),
           "BENCH_INTERVAL": "0.1", "BENCH_GUARANTEE": "exactly_once", "BENCH_TIMEOUT": "900",
           "BENCH_INSTANCE_ID": instance}
    cmd = ["java", f"@{kstreams_build.ARGFILE}", KSTREAMS_MAIN]
    launched = time.time()
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=1000)
        finally:
            if proc.poll() is None:  # timed out or interrupted: stop this JVM, only it
                proc.kill()
                proc.wait()
    lines = out.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in result:
        raise RuntimeError(f"{KSTREAMS_MAIN} exited {proc.returncode}: {result} (log: {log})")
    result["launch_to_first_event_s"] = result.pop("first_event_epoch") - launched
    return result


async def kstreams_scenario(bootstrap: str, keys: int, app_id: str,
                            workdir: Path) -> dict[str, Any]:
    fill = await fill_changelog(bootstrap, f"{app_id}-counts-changelog", keys, kstreams_record)
    await ensure_topics(bootstrap, [TopicSpec(f"{app_id}-in", PARTITIONS)], 1)
    workdir.mkdir(parents=True, exist_ok=True)
    runs = {}
    starts = (("empty", b"key-1", "bench-0"), ("current", b"key-2", "bench-0"),
              ("current_dynamic", b"key-3", ""))
    for name, key, instance in starts:
        await produce(bootstrap, f"{app_id}-in", [(key, b"1")])
        runs[name] = await asyncio.to_thread(kstreams_start, bootstrap, app_id,
                                             workdir / "state", workdir / "kstreams.log",
                                             instance)
    return {"system": "kstreams", "keys": keys, "fill_s": fill, **runs}


# ------------------------------------------------------------------------------ driver

async def run_all(bootstrap: str, sizes: list[int], systems: list[str], repeats: int,
                  workdir: Path, consumer_options: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for repeat in range(repeats):
        for keys in sizes:
            for system in systems:
                app_id = f"restore-{system}-{keys}-r{repeat}"
                if system == "eoflow":
                    row = await eoflow_scenario(bootstrap, keys, app_id, workdir / app_id,
                                                consumer_options)
                else:
                    row = await kstreams_scenario(bootstrap, keys, app_id, workdir / app_id)
                row["repeat"] = repeat
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def _median(rows: list[dict[str, Any]], *path: str) -> float:
    values = []
    for row in rows:
        value: Any = row
        for part in path:
            value = value[part]
        values.append(float(value))
    return statistics.median(values)


def table(rows: list[dict[str, Any]]) -> str:
    """Medians per (system, keys): restore, start -> first event on an empty and a current
    store, and what the restart read."""
    head = (f"{'system':<36} {'keys':>9} {'n':>2} {'restored':>9} {'restore s':>9} "
            f"{'records/s':>9} {'empty: ready s':>14} {'first event s':>13} "
            f"{'current: first event s':>22} {'restart read':>12}")
    out = [head, "-" * len(head)]
    for keys in sorted({r["keys"] for r in rows}):
        for system in SYSTEMS:
            rs = [r for r in rows if r["keys"] == keys and r["system"] == system]
            if not rs:
                continue
            restored, seconds = _median(rs, "empty", "restored"), _median(rs, "empty", "restore_s")
            label = "eoflow worker" if system == "eoflow" else "Kafka Streams, static member"
            ready = "ready_s" if system == "eoflow" else "running_s"
            out.append(
                f"{label:<36} {keys:>9,} {len(rs):>2} {restored:>9,.0f} {seconds:>9.2f} "
                f"{restored / seconds if seconds else 0:>9,.0f} "
                f"{_median(rs, 'empty', ready):>14.2f} "
                f"{_median(rs, 'empty', 'first_event_s'):>13.2f} "
                f"{_median(rs, 'current', 'first_event_s'):>22.2f} "
                f"{_median(rs, 'current', 'restored'):>12,.0f}")
            if system == "eoflow":
                restored = _median(rs, "standalone", "restored")
                seconds = _median(rs, "standalone", "restore_s")
                out.append(f"{'eoflow restore_partition, no worker':<36} {keys:>9,} "
                           f"{len(rs):>2} {restored:>9,.0f} {seconds:>9.2f} "
                           f"{restored / seconds if seconds else 0:>9,.0f}")
            else:
                out.append(
                    f"{'Kafka Streams, from JVM launch':<36} {keys:>9,} {len(rs):>2} "
                    f"{'':>9} {'':>9} {'':>9} {'':>14} "
                    f"{_median(rs, 'empty', 'launch_to_first_event_s'):>13.2f} "
                    f"{_median(rs, 'current', 'launch_to_first_event_s'):>22.2f}")
                out.append(
                    f"{'Kafka Streams restart, dynamic':<36} {keys:>9,} {len(rs):>2} "
                    f"{'':>9} {'':>9} {'':>9} {'':>14} {'':>13} "
                    f"{_median(rs, 'current_dynamic', 'first_event_s'):>22.2f} "
                    f"{_median(rs, 'current_dynamic', 'restored'):>12,.0f}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000, help="0: no small table")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated: eoflow, kstreams")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--results", type=Path, help="write every row as JSON here")
    parser.add_argument("--eoflow-consumer-option", action="append", default=[],
                        metavar="NAME=INT", help="eoflow's consumer_options (its consumers "
                        "and changelog reader), e.g. fetch_max_wait_ms=10; repeatable")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    consumer_options = {name: int(value) for name, _, value in
                        (o.partition("=") for o in args.eoflow_consumer_option)}
    if unknown := set(systems) - set(SYSTEMS):
        parser.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("eoflow").setLevel(logging.INFO)
    if "kstreams" in systems:
        kstreams_build.ensure_built()  # before the broker: a failed build costs nothing
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eoflow-restore-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = [n for n in (args.small, args.keys) if n > 0]
    load = os.getloadavg()
    broker = KafkaBroker(datadir=workdir / "kafka", heap="1g").start()
    try:
        rows = asyncio.run(run_all(broker.bootstrap, sizes, systems, args.repeats, workdir,
                                   consumer_options))
    finally:
        broker.stop()
    if args.results:
        args.results.write_text(json.dumps(
            {"command": sys.argv, "load_before": load, "load_after": os.getloadavg(),
             "kafka_streams": kstreams_build.version(), "rows": rows}, indent=1) + "\n")
    print(table(rows))
    print(f"load average before {load[0]:.2f} / after {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
