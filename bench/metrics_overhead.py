"""Metrics overhead on the count workload, broker-less: N records through the TestDriver.

    PYTHONPATH=<eoflow tree> .venv/bin/python bench/metrics_overhead.py 30000   # records/s

Run it against a tree before and after a change (e.g. git archive REV eoflow | tar -x).
"""
import asyncio
import json
import sys
import time
import uuid

import eoflow
from eoflow._transport.batching import default_partition
from eoflow.testing import TestDriver

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
P = 4

def build():
    app = eoflow.App(f"b-{uuid.uuid4().hex[:6]}", commit_interval=0.1)
    src = app.topic("in", partitions=P, key_serializer="str")
    out = app.topic("out", partitions=P, key_serializer="str")
    counts = app.Table("counts", default=int, partitions=P, store="memory://")

    @app.agent(src, name="count")
    async def count(stream):
        async for k, v in stream.items():
            counts[k] += 1
            await out.send(key=k, value={"id": v["id"], "n": counts[k]})
    return app

async def main():
    app = build()
    driver = TestDriver(app, commit_interval=0.1)
    broker = driver.broker
    broker.create_topic("in", P)
    for i in range(N):
        k = f"k{i % 1000}".encode()
        value = json.dumps({"id": i}).encode()
        broker.append(None, 0, "in", default_partition(k, P), [(k, value, None, ())])
    t0 = time.perf_counter()
    await driver.start(timeout=60)
    await driver.settle(timeout=600)
    dt = time.perf_counter() - t0
    await driver.stop()
    driver._tmp.cleanup()
    print(f"{N / dt:.0f}")

asyncio.run(main())
