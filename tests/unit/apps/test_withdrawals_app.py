"""apps/withdrawals.py (Faust's examples/withdrawals.py) on the broker-less driver."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from apps.withdrawals import CountryTotal, Withdrawal, app, sample
from eoflow import Window
from eoflow.testing import TestDriver

H = 1_699_999_200.0  # an hour boundary (and so a 10 s one)
HOUR = Window(H, H + 3600)
# Repartition keys are JSON: "se" -> partition 1, "no" and "fi" -> 3, "dk" -> 2.


def total(country: str, start: float, amount: float) -> CountryTotal:
    return CountryTotal(country=country, start=datetime.fromtimestamp(start, UTC),
                        end=datetime.fromtimestamp(start + 10, UTC), total=amount)


async def withdraw(driver: TestDriver, user: str, country: str, amount: float,
                   second: float) -> None:
    await driver.send("withdrawals", Withdrawal(user=user, country=country, amount=amount),
                      key=user, timestamp=H + second)


async def test_totals_per_user_per_hour_and_per_country_per_10_seconds(
        caplog: pytest.LogCaptureFixture) -> None:
    async with TestDriver(app) as driver:
        await withdraw(driver, "ann", "se", 100.0, 1)
        await withdraw(driver, "bob", "se", 25.5, 2)
        await withdraw(driver, "ann", "no", 10.0, 3)
        await withdraw(driver, "cid", "dk", 7.25, 4)
        await withdraw(driver, "ann", "se", 1.0, 12)
        await withdraw(driver, "bob", "se", 2.0, 8)  # out of order, within the 10 s of grace
        await driver.settle()
        assert driver.values("country-totals") == []  # se's first window closes at 20
        assert driver.table("country_to_total") == {
            ("se", Window(H, H + 10)): 127.5, ("se", Window(H + 10, H + 20)): 1.0,
            ("no", Window(H, H + 10)): 10.0, ("dk", Window(H, H + 10)): 7.25}

        await withdraw(driver, "ann", "se", 3.0, 21)  # closes (and expires) se's first window
        await withdraw(driver, "eve", "fi", 5.0, 25)  # same partition as "no": closes no's
        await withdraw(driver, "ann", "se", 4.0, 5)   # too late for se's first window
        await driver.settle()
        assert sorted(driver.values("country-totals"), key=lambda t: t.country) == [
            total("no", H, 10.0), total("se", H, 127.5)]
        assert driver.table("country_to_total") == {
            ("se", Window(H + 10, H + 20)): 1.0, ("se", Window(H + 20, H + 30)): 3.0,
            ("dk", Window(H, H + 10)): 7.25, ("fi", Window(H + 20, H + 30)): 5.0}
        # The late withdrawal still counts for its user (a table of its own, not late).
        assert driver.table("user_to_total") == {
            ("ann", HOUR): 118.0, ("bob", HOUR): 27.5, ("cid", HOUR): 7.25, ("eve", HOUR): 5.0}
        assert "came after se's window closed: not counted" in caplog.text


async def test_a_crash_before_commit_counts_nothing_twice() -> None:
    async with TestDriver(app) as driver:
        await withdraw(driver, "ann", "se", 100.0, 1)
        await withdraw(driver, "bob", "se", 25.5, 2)
        await driver.settle()
        await withdraw(driver, "ann", "se", 1.0, 21)
        await driver.crash(at="before_commit")
        await withdraw(driver, "bob", "se", 2.0, 22)
        await driver.settle()
        assert driver.values("country-totals") == [total("se", H, 125.5)]
        assert driver.table("user_to_total") == {("ann", HOUR): 101.0, ("bob", HOUR): 27.5}
        assert driver.table("country_to_total") == {("se", Window(H + 20, H + 30)): 3.0}


async def test_the_sample_inputs_fold_into_the_tables_and_every_closed_window_once() -> None:
    inputs = sample(300)
    assert inputs == sample(300)  # seeded: usable by `eoflow verify --inputs`
    users: dict[str, float] = defaultdict(float)
    countries: dict[tuple[str, float], float] = defaultdict(float)
    async with TestDriver(app) as driver:
        for i, (topic, key, withdrawal) in enumerate(inputs):
            t = H + i * 0.25  # 75 s of withdrawals
            await driver.send(topic, withdrawal, key=key, timestamp=t)
            if i % 10 == 9:
                # Live traffic: the repartition interleaves the source partitions at most
                # 10 inputs (2.5 s) apart, well within the 10 s of grace.
                await driver.settle()
            users[withdrawal.user] += withdrawal.amount
            countries[(withdrawal.country, H + (i * 0.25) // 10 * 10)] += withdrawal.amount
        await driver.settle()
        assert driver.table("user_to_total") == {(u, HOUR): v for u, v in users.items()}
        emitted = Counter((t.country, t.start.timestamp(), t.total)
                          for t in driver.values("country-totals"))
        assert set(emitted.values()) == {1}  # no window emitted twice
        finals = {(c, start): v for (c, start, v) in emitted}
        assert len(finals) >= 7  # country_0's windows up to the last 10 s at least
        open_windows = {(c, w.start): v for (c, w), v in driver.table("country_to_total").items()}
        for window, amount in countries.items():
            # A window is final (emitted) or still open in the table; either way, the fold.
            assert window in finals or window in open_windows
            assert finals.get(window, open_windows.get(window)) == amount
        assert set(finals) <= set(countries)
