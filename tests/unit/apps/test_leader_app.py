"""apps/leader.py (Faust's examples/leader.py) on the broker-less driver."""

from __future__ import annotations

import random

import pytest

import apps.leader
from apps.leader import app, say
from eoflow.testing import TestDriver

SAY = "leader-example-say"  # the agent's own topic: {app_id}-{agent}


@pytest.fixture
def greetings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The greetings the timer will send, in order (its random numbers, seeded)."""
    monkeypatch.setattr(apps.leader, "random", random.Random(11))
    seeded = random.Random(11)
    return [str(seeded.random()) for _ in range(10)]


async def test_the_leader_greets_every_2_seconds_and_say_hears_each_once(
        greetings: list[str]) -> None:
    async with TestDriver(app) as driver:
        await driver.advance(1.9)
        assert driver.values(SAY) == []
        for _ in range(3):
            await driver.advance(2)
        # No key: random partitions, so no order across them.
        assert sorted(driver.values(SAY)) == sorted(greetings[:3])
        assert sorted(driver.values("greetings")) == sorted(f"heard {g}" for g in greetings[:3])


async def test_a_crash_before_commit_drops_that_run_and_duplicates_nothing(
        greetings: list[str]) -> None:
    async with TestDriver(app) as driver:
        await driver.advance(2)
        driver.clock.advance(2)                  # the second run comes due...
        await driver.crash(at="before_commit")   # ...and dies with its interval
        await driver.settle()
        assert driver.values(SAY) == greetings[:1]  # the run is not repeated
        await driver.advance(2)                     # the restarted worker's first run
        assert sorted(driver.values(SAY)) == sorted([greetings[0], greetings[2]])
        assert sorted(driver.values("greetings")) == sorted(
            [f"heard {greetings[0]}", f"heard {greetings[2]}"])


async def test_say_hears_a_greeting_once_across_a_crash(greetings: list[str]) -> None:
    async with TestDriver(app) as driver:
        await driver.send(SAY, "hello")
        await driver.crash(at="before_commit")   # while say handles it
        await driver.settle()
        assert driver.values("greetings") == ["heard hello"]


async def test_faust_style_with_test_context(greetings: list[str]) -> None:
    """Faust's ``agent.test_context()`` / ``agent.results``, as it reads in eoflow."""
    async with say.test_context() as agent:
        event = await agent.put("hey")
        assert agent.results[event.offset] == ["heard hey"]
