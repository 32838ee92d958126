"""`eoflow send` and `eoflow table get|dump` against the real broker."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from eoflow.cli import load_app, main
from eoflow.testing import create_topics, read_committed, running, wait_for_records


@pytest.fixture
def app_module(tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tiny counting app written to a module the CLI can import with -A."""
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import eoflow
        app = eoflow.App("{name}", broker="kafka://{kafka_bootstrap}",
                         datadir={str(tmp_path / "data")!r})
        words = app.topic("{name}-words", partitions=2, key_serializer="str")
        counts = app.Table("counts", default=int)

        @app.agent(words)
        async def count(stream):
            async for word, _ in stream.items():
                counts[word] += 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return name


async def test_send_and_table_commands(app_module: str, kafka_bootstrap: str) -> None:
    app = load_app(app_module)
    runner = CliRunner()
    async with running(app):
        for word in ["a", "b", "a"]:
            result = await asyncio.to_thread(
                runner.invoke, main, ["send", f"{app_module}-words", "1", "--key", word,
                                      "-A", app_module])
            assert result.exit_code == 0, result.output
            assert f"sent to {app_module}-words[" in result.output
        records = await wait_for_records(kafka_bootstrap, f"{app_module}-counts-changelog", 2)
        assert records
        await _wait_for_count(kafka_bootstrap, app_module, b'"a"', b"2")
    from_log = await asyncio.to_thread(
        runner.invoke, main, ["table", "dump", "-A", app_module, "counts", "--from-changelog"])
    assert from_log.exit_code == 0, from_log.output
    assert sorted(from_log.output.splitlines()) == ['"a"\t2', '"b"\t1']
    local = runner.invoke(main, ["table", "dump", "-A", app_module, "counts"])
    assert local.exit_code == 0, local.output
    assert sorted(local.output.splitlines()) == ['"a"\t2', '"b"\t1']
    got = runner.invoke(main, ["table", "get", "-A", app_module, "counts", '"a"'])
    assert got.exit_code == 0 and got.output.strip() == "2"
    missing = runner.invoke(main, ["table", "get", "-A", app_module, "counts", '"zzz"'])
    assert missing.exit_code != 0 and "not found" in missing.output


async def _wait_for_count(bootstrap: str, app_id: str, key: bytes, value: bytes) -> None:
    for _ in range(100):
        records = await wait_for_records(bootstrap, f"{app_id}-counts-changelog", 1)
        final = {r.key: r.value for r in records}
        if final.get(key) == value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key!r} never reached {value!r}")


def test_unknown_table_is_a_clear_error(app_module: str) -> None:
    result = CliRunner().invoke(main, ["table", "dump", "-A", app_module, "nope"])
    assert result.exit_code != 0 and "has no table 'nope'" in result.output


def test_bad_app_spec_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["worker", "-A", "no_such_module_xyz"])
    assert result.exit_code != 0 and "cannot import" in result.output




def test_send_builds_the_record_of_a_typed_topic(kafka_bootstrap: str) -> None:
    asyncio.run(create_topics(kafka_bootstrap, {"page-views": 1}))
    runner = CliRunner()
    value = '{"user": "ann", "page": "/home", "viewed_at": "2024-05-01T12:00:05Z"}'
    args = ["send", "page-views", value, "-A", "apps.pageviews",
            "--broker", f"kafka://{kafka_bootstrap}"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    records = asyncio.run(read_committed(kafka_bootstrap, "page-views"))
    from apps.pageviews import PageView

    assert PageView.from_data(json.loads(records[-1].value)) == \
        PageView.from_data(json.loads(value))
    bad = runner.invoke(main, [*args[:2], '{"user": "ann"}', *args[3:]])
    assert bad.exit_code != 0
    assert "field 'page': required, but missing" in bad.output
