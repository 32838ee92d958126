"""Apps for tests/integration/test_verify.py: one with a planted exactly-once bug, one that
is not deterministic, and the inputs generators."""

from __future__ import annotations

import random
from typing import Any

import eoflow

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "the", "cat"]


def lines(n: int) -> list[tuple[str, Any, Any]]:
    """Inputs for apps.wordcount: ``n`` lines of words from a fixed list."""
    rng = random.Random(7)
    return [("lines", None, " ".join(rng.choices(WORDS, k=4))) for _ in range(n)]


def events(n: int) -> list[tuple[str, Any, Any]]:
    return [("events", f"k{i % 5}", {"id": i}) for i in range(n)]


# An app that counts in a module-level dict, not in a table: a killed worker restarts
# from zero and the counts it emits go wrong (the bug verify must find).
leaky = eoflow.App("leaky", session_timeout=3.0, commit_interval=0.1)
leaky_events = leaky.topic("events", partitions=2, key_serializer="str")
leaky_counts = leaky.topic("counts", partitions=2, key_serializer="str")
_counts: dict[str, int] = {}


@leaky.agent(leaky_events)
async def count_in_a_dict(stream: eoflow.Stream[str, Any]) -> None:
    async for key, _ in stream.items():
        _counts[key] = _counts.get(key, 0) + 1
        await leaky_counts.send(key=key, value=_counts[key])


# An app whose output depends on chance: two undisturbed runs differ.
dice = eoflow.App("dice", session_timeout=3.0)
dice_events = dice.topic("events", partitions=1, key_serializer="str")
dice_out = dice.topic("rolls", partitions=1, key_serializer="str")


@dice.agent(dice_events)
async def roll(stream: eoflow.Stream[str, Any]) -> None:
    async for key, _ in stream.items():
        await dice_out.send(key=key, value=random.random())


def orders(n: int) -> list[tuple[str, Any, Any]]:
    """Inputs for ``windowed``: every 50th order is bad (no amount) and is dead-lettered."""
    return [("orders", f"c{i % 4}", {"id": i} if i % 50 == 49 else {"id": i, "amount": i % 7})
            for i in range(n)]


# Windows on the Kafka timestamp, dead letters and a timer: what verify used to misjudge
# (the undisturbed run's timestamps were all one instant, dead letters were not compared,
# and the timer's ticks differed by design).
windowed = eoflow.App("windowed", session_timeout=3.0, commit_interval=0.1)
windowed_orders = windowed.topic("orders", partitions=2, key_serializer="str")
windowed_totals = windowed.topic("totals", partitions=2, key_serializer="str")
windowed_ticks = windowed.topic("ticks", partitions=1)
per_100ms = windowed.Table("per-100ms", default=int, partitions=2).tumbling(0.1, expires=3600)


@windowed.agent(windowed_orders)
async def total(stream: eoflow.Stream[str, Any]) -> None:
    async for customer, order in stream.items():
        per_100ms[customer] += order["amount"]
        await windowed_totals.send(key=customer, value=per_100ms[customer].current())


@windowed.timer(0.5)
async def tick() -> None:
    await windowed_ticks.send(value="tick")
