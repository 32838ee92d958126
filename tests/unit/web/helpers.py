"""Shared bits of the web tests: an app with a table, HTTP GETs, polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

import eoflow


async def get(url: str) -> tuple[int, Any]:
    """GET ``url``: ``(status, parsed JSON or text)``."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def keyed_app(datadir: Path | None = None, partitions: int = 2, app_id: str | None = None,
              **settings: Any) -> tuple[eoflow.App, dict[str, Any]]:
    """``in`` (raw keys, JSON values) -> table ``latest[key] = value["v"]``.

    ``hooks`` lets a test act inside the agent: ``hooks["after_write"]`` is awaited after
    the write, with the value. Two workers in one process need two apps (same
    ``app_id``): a running worker installs itself on its app.
    """
    options: dict[str, Any] = {} if datadir is None else {"datadir": datadir}
    app = eoflow.App(app_id or f"w-{uuid.uuid4().hex[:6]}", **options, **settings)
    src = app.topic("in", partitions=partitions)
    latest = app.Table("latest", partitions=partitions)
    hooks: dict[str, Any] = {}

    @app.agent(src, name="keep")
    async def keep(stream: eoflow.Stream[bytes, Any]) -> None:
        async for key, value in stream.items():
            latest[key.decode()] = value["v"]
            hook = hooks.get("after_write")
            if hook is not None:
                await hook(value["v"])

    return app, hooks
