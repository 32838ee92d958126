"""The input driver: N keyed JSON inputs with unique ids, from a known seed.

Inputs are produced with a plain idempotent (non-transactional) producer, optionally
rate-limited, in the background (:meth:`Driver.start`) while a scenario injects faults.
The oracle does not trust this list blindly: it reads the input topic back and identifies
every input record by ``(partition, offset)``; the list is used to check that what the
driver meant to send is really there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

__all__ = ["POISON_KINDS", "Driver", "Input", "event_time", "generate_inputs"]

log = logging.getLogger(__name__)

#: Marks that make an input end in the dead-letter topic instead of the outputs.
POISON_KINDS = ("undecodable", "raise", "large", "slow")
#: Every kind: "ok" inputs are processed; "slow_once" is slow on its first attempt only.
KINDS = ("ok", "slow_once", *POISON_KINDS)


#: Event time of input ``id`` (seconds): a fixed start, 10 ms apart, in id order.
EVENT_T0, EVENT_DT = 1_700_000_000.0, 0.01


def event_time(input_id: int) -> float:
    return round(EVENT_T0 + input_id * EVENT_DT, 3)


@dataclass(frozen=True, slots=True)
class Input:
    """One input as planned: ``id`` is unique, ``key`` is the aggregation key."""

    id: int
    source_key: str
    key: str
    n: int
    kind: str = "ok"

    def encode(self) -> bytes:
        if self.kind == "undecodable":
            return b"\xff\xfe not json, id=" + str(self.id).encode()
        value: dict[str, object] = {"id": self.id, "key": self.key, "n": self.n,
                                    "t": event_time(self.id)}
        if self.kind in ("raise", "large", "slow"):
            value[self.kind] = True
        elif self.kind == "slow_once":
            value["slow"] = "once"
        return json.dumps(value, separators=(",", ":")).encode()


def generate_inputs(records: int, seed: int, *, keys: int = 200,
                    marks: Mapping[str, int] | None = None) -> list[Input]:
    """``records`` inputs; ``marks`` maps a kind to how many inputs carry it."""
    rng = random.Random(seed)
    chosen: dict[int, str] = {}
    for kind, count in (marks or {}).items():
        if kind not in KINDS:
            raise ValueError(f"unknown input kind {kind!r}; use one of {KINDS}")
        free = [i for i in range(records // 10, records) if i not in chosen]
        for i in rng.sample(free, count):
            chosen[i] = kind
    return [Input(i, f"s{rng.randrange(keys * 5)}", f"k{rng.randrange(keys)}",
                  rng.randrange(-1000, 1000), chosen.get(i, "ok"))
            for i in range(records)]


@dataclass
class Driver:
    """Produces ``inputs`` to ``topic``; ``rate`` (records/s) None means as fast as possible."""

    bootstrap: str
    topic: str
    inputs: list[Input]
    rate: float | None = None
    sent: int = 0
    failures: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> asyncio.Task[None]:
        """Produce in the background; await :meth:`wait` (or the task) for the end."""
        self._task = asyncio.create_task(self.run(), name="driver")
        return self._task

    async def wait(self, timeout: float | None = None) -> None:
        if self._task is not None:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
            linger_ms=5, request_timeout_ms=30000, max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            chunk = 500 if self.rate is None else max(1, int(self.rate / 20))
            started = time.monotonic()
            for first in range(0, len(self.inputs), chunk):
                await self._send_chunk(producer, self.inputs[first:first + chunk])
                if self.rate is not None:
                    ahead = self.sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()

    async def _send_chunk(self, producer: AIOKafkaProducer, chunk: list[Input]) -> None:
        pending = list(chunk)
        while pending:
            futures = [await producer.send(self.topic, item.encode(), item.source_key.encode())
                       for item in pending]
            results = await asyncio.gather(*futures, return_exceptions=True)
            # A failed send is retried: at worst the input topic holds the input twice,
            # which the oracle handles (it identifies inputs by partition and offset).
            retry = [item for item, r in zip(pending, results, strict=True)
                     if isinstance(r, BaseException)]
            self.sent += len(pending) - len(retry)
            if retry:
                self.failures += len(retry)
                log.warning("driver: %d sends failed, retrying", len(retry))
                await asyncio.sleep(0.5)
            pending = retry
