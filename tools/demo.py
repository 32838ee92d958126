"""First demo: a real transactional round trip against a throwaway local Kafka broker.

Starts Apache Kafka (KRaft) on a free port in a temp dir, writes a few lines in one Kafka
transaction (and a second transaction that is aborted), reads the topic back with
``read_committed`` and prints what it sees, then stops the broker. Placeholder until the
word-count app demo replaces it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tools.kafka.kafkactl import KAFKA_VERSION, KafkaBroker

TOPIC = "demo-lines"
LINES = ["the quick brown fox", "jumps over", "the lazy dog"]


async def round_trip(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="eoflow-demo")
    await producer.start()
    try:
        async with producer.transaction():
            for line in LINES:
                await producer.send_and_wait(TOPIC, line.encode())
        await producer.begin_transaction()
        await producer.send_and_wait(TOPIC, b"this line is aborted and never seen")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(TOPIC, b"<end>")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while "<end>" not in seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out reading back; got {seen}")
            batches = await consumer.getmany(tp, timeout_ms=500)
            seen += [m.value.decode() for m in batches.get(tp, []) if m.value is not None]
        return seen[:-1]
    finally:
        await consumer.stop()


def main() -> int:
    broker = KafkaBroker()
    t0 = time.monotonic()
    try:
        print(f"starting Apache Kafka {KAFKA_VERSION} (KRaft) in {broker.datadir} ...")
        broker.start()
        print(f"broker ready on {broker.bootstrap} in {time.monotonic() - t0:.1f}s")
        lines = asyncio.run(round_trip(broker.bootstrap))
        print(f"read_committed from {TOPIC!r}:")
        for line in lines:
            print(f"  {line}")
        if lines != LINES:
            print(f"unexpected: {lines!r} != {LINES!r}", file=sys.stderr)
            return 1
        return 0
    finally:
        broker.close()
        print("broker stopped")


if __name__ == "__main__":
    sys.exit(main())
