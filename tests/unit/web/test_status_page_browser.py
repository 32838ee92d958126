"""The status page as a browser renders it (headless Chromium, where it is installed:
``apt-get install chromium``; skipped elsewhere, so the suite needs no browser)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from eoflow.testing import TestDriver

from .helpers import keyed_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium")


async def test_the_status_page_renders_state_partitions_and_tables() -> None:
    app, _ = keyed_app()
    async with TestDriver(app, web_enabled=True, web_port=0) as driver:
        assert driver.worker is not None
        for i in range(3):
            await driver.send("in", {"v": i}, key=f"k{i}".encode())
        await driver.settle()
        proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
            f"{driver.worker.web_url}/", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        dom, _ = await asyncio.wait_for(proc.communicate(), 60)
    page = dom.decode()
    assert app.id in page and "ready" in page
    assert "Assigned partitions" in page and "Table partitions" in page
    assert ">latest<" in page  # the table's row
