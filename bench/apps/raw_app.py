"""The ceiling: a raw aiokafka consume -> transform -> produce loop, no transactions.

Offsets are committed every BENCH_INTERVAL seconds after a producer flush (at-least-once).
The count workload keeps its counts in a plain dict: no store, no changelog. The windowed
counts (count-tumbling, count-hopping) keep a dict keyed by (key, window start ms) and drop
windows WINDOW_EXPIRES s past their end (behind the largest timestamp seen) every 10,000
records.

    python -m bench.apps.raw_app
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.apps import _common as c


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Windows:
    """Windowed counts in a dict keyed by (key, window start ms)."""

    def __init__(self) -> None:
        self.size = round(c.WINDOW_SIZE * 1000)
        self.step = self.size if c.TUMBLING else round(c.WINDOW_STEP * 1000)
        self.expires = round(c.WINDOW_EXPIRES * 1000)
        self.counts: dict[tuple[bytes, int], int] = {}
        self.max_ts = 0
        self.added = 0

    def add(self, key: bytes, ts: int) -> list[tuple[int, int]]:
        """Count one record at ``ts`` (ms); each window's (start, count)."""
        last = ts // self.step * self.step
        first = math.floor((ts - self.size) / self.step + 1) * self.step
        out = []
        for start in range(first, last + 1, self.step):
            n = self.counts[key, start] = self.counts.get((key, start), 0) + 1
            out.append((start, n))
        self.max_ts = max(self.max_ts, ts)
        self.added += 1
        if self.added % 10_000 == 0:
            horizon = self.max_ts - self.expires - self.size
            for k in [k for k in self.counts if k[1] < horizon]:
                del self.counts[k]
        return out


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        c.IN_TOPIC, bootstrap_servers=c.BOOTSTRAP, group_id=c.APP_ID,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=c.BOOTSTRAP, acks="all", linger_ms=10,
                                max_batch_size=512 * 1024)
    await producer.start()
    await consumer.start()
    counts: defaultdict[bytes, int] = defaultdict(int)
    passthrough = c.WORKLOAD == "passthrough"
    windowed = Windows() if c.WINDOWED else None
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for msgs in batches.values():
                for m in msgs:
                    v = json.loads(m.value)
                    if windowed is not None:
                        for start, n in windowed.add(m.key, m.timestamp):
                            await producer.send(c.OUT_TOPIC, key=m.key,
                                                value=_dumps(c.windowed(start, n)))
                        continue
                    if passthrough:
                        out = c.passthrough(v)
                    else:
                        counts[m.key] += 1
                        out = c.counted(v, counts[m.key])
                    await producer.send(c.OUT_TOPIC, key=m.key, value=_dumps(out))
            if time.monotonic() - last_commit >= c.INTERVAL:
                await producer.flush()
                await consumer.commit()
                last_commit = time.monotonic()
        await producer.flush()
        await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
