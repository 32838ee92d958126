"""apps/tableofset.py (Faust's examples/tableofset.py) on the broker-less driver."""

from __future__ import annotations

import logging

import pytest

from apps.tableofset import app, join
from eoflow.testing import TestDriver


async def test_people_join_and_leave_locations() -> None:
    async with TestDriver(app) as driver:
        for name, location in [("ann", "paris"), ("bob", "paris"), ("cid", "oslo")]:
            await driver.send("people-joining", name, key=location)
        await driver.settle()
        for name, location in [("ann", "paris"), ("cid", "oslo"), ("zed", "oslo")]:
            await driver.send("people-leaving", name, key=location)
        await driver.settle()
        assert driver.table("people") == {"paris": ["bob"]}  # oslo emptied: deleted
        changes = [(o.key, o.value) for o in driver.outputs("people-at")]
        assert [v for k, v in changes if k == "paris"] == [["ann"], ["ann", "bob"], ["bob"]]
        assert [v for k, v in changes if k == "oslo"] == [["cid"], [], []]


async def test_the_timer_logs_the_table(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apps.tableofset")
    async with TestDriver(app) as driver:
        await driver.send("people-joining", "ann", key="rome")
        await driver.settle()
        caplog.clear()
        await driver.advance(10)
        assert "TABLE NOW: {'rome': ['ann']}" in caplog.text


async def test_a_crash_before_commit_changes_each_set_once() -> None:
    async with TestDriver(app) as driver:
        await driver.send("people-joining", "ann", key="paris")
        await driver.settle()
        await driver.send("people-joining", "bob", key="paris")
        await driver.crash(at="before_commit")  # while bob joins: processed again, once
        await driver.settle()
        await driver.send("people-leaving", "ann", key="paris")
        await driver.settle()
        await driver.send("people-joining", "cid", key="paris")
        await driver.settle()
        assert driver.table("people") == {"paris": ["bob", "cid"]}
        assert driver.values("people-at") == [["ann"], ["ann", "bob"], ["bob"], ["bob", "cid"]]


async def test_faust_style_with_test_context() -> None:
    """Faust's ``join.test_context()`` / ``agent.put`` test, as it reads in eoflow."""
    async with join.test_context() as agent:
        event = await agent.put("ann", key="rome")
        assert (event.key, event.value, event.offset) == ("rome", "ann", 0)
        await agent.put("bob", key="rome")
        assert agent.driver.table("people") == {"rome": ["ann", "bob"]}
        assert agent.driver.values("people-at") == [["ann"], ["ann", "bob"]]
