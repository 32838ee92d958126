"""`make demo`: the word-count app under `eoflow worker`, against a throwaway local Kafka.

1. Starts Apache Kafka (KRaft) on a free port in a temp dir.
2. Starts `eoflow worker -A apps.wordcount` as a subprocess (exactly-once, RocksDB table).
3. Feeds it sample lines, waits until every word has been counted.
4. Reads the `word-counts` topic with read_committed and prints the final counts, and
   the `counts` table as restored from its changelog.
5. Stops the worker (SIGTERM: final commit) and the broker, even on failure.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eoflow.testing import (  # noqa: E402
    produce,
    read_changelog,
    read_committed,
)
from tools.kafka.kafkactl import KAFKA_VERSION, KafkaBroker  # noqa: E402

LINES = [
    "the quick brown fox jumps over the lazy dog",
    "exactly once means every input counts exactly once",
    "the fox and the dog count once",
    "kill the worker and the counts stay exact",
]


def expected_counts() -> dict[str, int]:
    return dict(collections.Counter(w for line in LINES for w in line.lower().split()))


async def wait_for_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> None:
    """The worker creates its topics at start-up; feed input only once they exist."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while topic not in await admin.list_topics():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not create {topic!r} in {timeout}s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def feed_and_wait(bootstrap: str, total_words: int, timeout: float = 90.0) -> list[Any]:
    await wait_for_topic(bootstrap, "word-counts")
    await produce(bootstrap, "lines", [(None, line.encode()) for line in LINES])
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = await read_committed(bootstrap, "word-counts")
        except Exception:
            records = []
        if len(records) >= total_words:
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(records)} of {total_words} counts after {timeout}s")
        await asyncio.sleep(0.3)


def start_worker(bootstrap: str, datadir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EOFLOW_BROKER=f"kafka://{bootstrap}", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "eoflow.cli", "worker", "-A", "apps.wordcount",
         "--datadir", str(datadir), "--loglevel", "info"],
        cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="eoflow-demo-"))
    print(f"starting Apache Kafka {KAFKA_VERSION} (KRaft) ...", flush=True)
    broker = KafkaBroker(datadir=tmp / "kafka").start()
    proc = None
    try:
        print(f"broker at {broker.bootstrap}; starting `eoflow worker -A apps.wordcount`",
              flush=True)
        proc = start_worker(broker.bootstrap, tmp / "worker-data", tmp / "worker.log")
        expected = expected_counts()
        records = asyncio.run(feed_and_wait(broker.bootstrap, sum(expected.values())))
        final: dict[str, int] = {}
        for record in records:
            final[record.key.decode()] = json.loads(record.value)
        print(f"\nfed {len(LINES)} lines; word-counts (read_committed), final count per word:")
        for word, count in sorted(final.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {word:<10} {count}")
        code = stop_worker(proc)
        table = asyncio.run(read_changelog(broker.bootstrap, "wordcount-counts-changelog"))
        restored = {json.loads(k): json.loads(v) for k, v in table.items()}
        ok = final == expected == restored
        print(f"\nworker exited with {code}; table `counts` restored from its changelog "
              f"{'equals' if restored == expected else 'DIFFERS FROM'} the expected counts")
        print("demo OK: every word counted exactly once" if ok else "demo FAILED")
        return 0 if ok and code == 0 else 1
    except BaseException:
        if proc is not None:
            print((tmp / "worker.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        if proc is not None:
            stop_worker(proc)
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
