"""`eoflow agents`, `eoflow tables` and `eoflow table dump` of a windowed table's local
stores, with no broker: the stores are written by a driver run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from eoflow.cli import main

APP = '''
import eoflow

app = eoflow.App("clickviews")
clicks = app.topic("clicks", partitions=1, key_serializer="str")
views = app.Table("views", default=int, partitions=1).tumbling(60, expires=3600)


@app.agent(clicks)
async def count(stream):
    async for user, _ in stream.items():
        views[user] += 1


@app.timer(30)
async def heartbeat():
    pass
'''


@pytest.fixture
def clickviews(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "clickviews_app.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "clickviews_app"
    sys.modules.pop("clickviews_app", None)


def test_agents_and_tables_list_what_the_app_declares(clickviews: str) -> None:
    runner = CliRunner()
    agents = runner.invoke(main, ["agents", "-A", clickviews])
    assert agents.exit_code == 0, agents.output
    assert "clickviews_app.count\ttopics: clicks\tconcurrency: 1" in agents.output
    assert "clickviews_app.heartbeat\tinterval every 30s" in agents.output
    tables = runner.invoke(main, ["tables", "-A", clickviews])
    assert "views\tTable\tchangelog: clickviews-views-changelog\ttumbling size=60s" \
        in tables.output


async def test_a_windowed_table_dumps_keys_and_window_bounds(clickviews: str,
                                                             tmp_path: Path) -> None:
    import importlib

    from eoflow.testing import TestDriver

    app = importlib.import_module(clickviews).app
    async with TestDriver(app, datadir=tmp_path / "data") as driver:
        for t in (1_700_000_000, 1_700_000_010, 1_700_000_070):
            await driver.send("clicks", {}, key="ann", timestamp=t)
        await driver.settle()
    result = CliRunner().invoke(main, ["table", "dump", "-A", clickviews, "views",
                                       "--datadir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        '"ann"\t[2023-11-14T22:13:00+00:00, 2023-11-14T22:14:00+00:00)\t2',
        '"ann"\t[2023-11-14T22:14:00+00:00, 2023-11-14T22:15:00+00:00)\t1',
    ]



@pytest.fixture
def slidingviews(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "slidingviews_app.py").write_text(
        APP.replace('"clickviews"', '"slidingviews"').replace(".tumbling(60,", ".sliding(60,"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "slidingviews_app"
    sys.modules.pop("slidingviews_app", None)


async def test_a_sliding_table_dumps_the_window_ending_at_each_event_time(
        slidingviews: str, tmp_path: Path) -> None:
    """Stored are contributions ([t, t]); dump and get show windows [t - size, t]."""
    import importlib

    from eoflow.testing import TestDriver

    app = importlib.import_module(slidingviews).app
    async with TestDriver(app, datadir=tmp_path / "data") as driver:
        for t in (1_700_000_000, 1_700_000_010, 1_700_000_070):
            await driver.send("clicks", {}, key="ann", timestamp=t)
        await driver.settle()
    runner = CliRunner()
    result = runner.invoke(main, ["table", "dump", "-A", slidingviews, "views",
                                  "--datadir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        '"ann"\t[2023-11-14T22:12:20+00:00, 2023-11-14T22:13:20+00:00]\t1',
        '"ann"\t[2023-11-14T22:12:30+00:00, 2023-11-14T22:13:30+00:00]\t2',
        '"ann"\t[2023-11-14T22:13:30+00:00, 2023-11-14T22:14:30+00:00]\t2',
    ]
    tables = runner.invoke(main, ["tables", "-A", slidingviews])
    assert "views\tTable\tchangelog: slidingviews-views-changelog\tsliding size=60s" \
        in tables.output
