"""Progress while a scenario runs: tails the input and the outputs, answers "drained?".

A background task reads the input topic (uncommitted) and ``echo``/``aggregates``/dlq
(``read_committed``) and keeps the set of input ``(partition, offset)`` seen in each.
The final verdict is the oracle's; this only tells a scenario when to stop waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eoflow.testing import Record, tail

from .driver import POISON_KINDS
from .oracle import Topics

__all__ = ["Watcher"]

Src = tuple[int, int]


@dataclass
class Watcher:
    bootstrap: str
    topics: Topics
    ok: set[Src] = field(default_factory=set)
    poison: set[Src] = field(default_factory=set)
    echoed: set[Src] = field(default_factory=set)
    aggregated: set[Src] = field(default_factory=set)
    dead: set[Src] = field(default_factory=set)
    #: features_app's aggregates name their input by id, not by coordinates.
    aggregated_ids: set[int] = field(default_factory=set)
    ids: dict[Src, int] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> Watcher:
        self._tasks = [asyncio.create_task(self._tail(committed), name="watcher")
                       for committed in (False, True)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def echo_count(self) -> int:
        return len(self.echoed)

    def drained(self) -> bool:
        aggregated = self.ok <= self.aggregated or (
            bool(self.aggregated_ids) and {self.ids.get(s) for s in self.ok} <= self.aggregated_ids)
        return self.ok <= self.echoed and aggregated and self.poison <= self.dead

    def status(self) -> str:
        return (f"inputs ok={len(self.ok)} poison={len(self.poison)}; echoed="
                f"{len(self.echoed & self.ok)} aggregated={len(self.aggregated & self.ok)} "
                f"dead={len(self.dead & self.poison)}")

    async def wait_for(self, condition: Callable[[], bool], timeout: float,
                       what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached after {timeout}s: {self.status()}")
            await asyncio.sleep(0.2)

    async def wait_echoed(self, n: int, timeout: float) -> None:
        """Until ``echo`` holds ``n`` committed inputs."""
        await self.wait_for(lambda: self.echo_count >= n, timeout, f"{n} echoed")

    async def _tail(self, committed: bool) -> None:
        names = ([self.topics.echo, self.topics.aggregates, self.topics.dlq] if committed
                 else [self.topics.input])
        async for record in tail(self.bootstrap, names, committed=committed):
            self._note(record)

    def _note(self, r: Record) -> None:
        t = self.topics
        if r.topic == t.input:
            try:
                value = json.loads(r.value or b"")
                poison = any(value.get(k) is True for k in POISON_KINDS)
                self.ids[(r.partition, r.offset)] = value["id"]
            except ValueError:
                poison = True
            (self.poison if poison else self.ok).add((r.partition, r.offset))
        elif r.topic == t.dlq:
            h = {k: v.decode() for k, v in r.headers or ()}
            if h.get("eoflow.topic") == t.input:
                self.dead.add((int(h["eoflow.partition"]), int(h["eoflow.offset"])))
        else:
            v = json.loads(r.value or b"null")
            if r.topic == t.echo:
                self.echoed.add((v["p"], v["o"]))
            elif "src" in v:
                self.aggregated.add((v["src"][0], v["src"][1]))
            else:
                self.aggregated_ids.add(v["id"])
