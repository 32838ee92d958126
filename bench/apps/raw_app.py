"""The ceiling: a raw aiokafka consume -> transform -> produce loop, no transactions.

Offsets are committed every BENCH_INTERVAL seconds after a producer flush (at-least-once).
The count workload keeps its counts in a plain dict: no store, no changelog.

    python -m bench.apps.raw_app
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.apps import _common as c


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


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
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for msgs in batches.values():
                for m in msgs:
                    v = json.loads(m.value)
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
