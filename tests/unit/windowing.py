"""Helpers shared by the window tests (sessions, sliding windows) on the test driver."""

from __future__ import annotations

from eoflow.testing import TestDriver


async def send_clicks(driver: TestDriver, key: str, *times: float, base: float,
                      partition: int = 0) -> None:
    """One ``clicks`` record of ``key`` at each of ``base + t``, then settle."""
    for t in times:
        await driver.send("clicks", {}, key=key, timestamp=base + t, partition=partition)
    await driver.settle()


def stored_keys(driver: TestDriver, table: str, partition: int = 0) -> list[bytes]:
    """Every key in the table partition's overlay (pending writes over the store)."""
    assert driver.worker is not None
    return [k for k, _ in driver.worker._tables._overlays[(table, partition)].items()]
