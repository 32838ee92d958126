"""A pytest plugin (loaded automatically once eoflow is installed): the ``eoflow_driver``
fixture starts broker-less test drivers and stops them after the test.

::

    async def test_counts(eoflow_driver):
        driver = await eoflow_driver(app)
        await driver.send("words", "hello")
        await driver.settle()
        assert driver.table("counts") == {"hello": 1}

It needs pytest-asyncio (the fixture is async); without it the plugin adds nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin is optional
    pytest_asyncio = None  # type: ignore[assignment]

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def eoflow_driver() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
        """``await eoflow_driver(app, **options)`` -> a started :class:`TestDriver`."""
        from eoflow.testing import TestDriver

        drivers: list[TestDriver] = []

        async def start(app: Any, **options: Any) -> TestDriver:
            driver = TestDriver(app, **options)
            await driver.start()
            drivers.append(driver)
            return driver

        yield start
        for driver in reversed(drivers):
            await driver.__aexit__(None, None, None)
