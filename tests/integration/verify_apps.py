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
