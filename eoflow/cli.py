"""The ``eoflow`` command: ``worker``, ``send`` and ``table``."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from eoflow._app import App
from eoflow.errors import ConfigurationError, EoflowError

__all__ = ["load_app", "main", "tune_gc"]


def load_app(spec: str) -> App:
    """``module[:attribute]`` (attribute defaults to ``app``) to the App it names."""
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, App):
        raise click.BadParameter(f"{spec!r} is not an eoflow.App (found {type(app).__name__})")
    return app


def _settings_overrides(broker: str | None, datadir: str | None,
                        instance_id: str | None, web_port: int | None = None,
                        web_host: str | None = None) -> dict[str, Any]:
    web = web_port is not None or web_host is not None
    return {"broker": broker or os.environ.get("EOFLOW_BROKER"),
            "datadir": Path(datadir) if datadir else None,
            "instance_id": instance_id, "web_port": web_port, "web_host": web_host,
            "web_enabled": True if web else None}


@click.group()
def main() -> None:
    """eoflow: exactly-once stream processing for Apache Kafka."""


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="module[:attribute] of the App")
@click.option("--broker", help="kafka://host:port (default: the app's, or $EOFLOW_BROKER)")
@click.option("--datadir", help="directory for table stores and the instance id")
@click.option("--instance-id", help="stable id of this worker (default: kept in --datadir)")
@click.option("--web-port", type=click.IntRange(0, 65535),
              help="serve /metrics, /health, /ready, /tables, /status on this port (0: any "
              "free one); default: the app's web settings")
@click.option("--web-host", help="address to bind the web server to (default 127.0.0.1)")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--gc-tuning/--no-gc-tuning", default=True, show_default=True,
              help="freeze the objects startup built out of Python's cyclic garbage "
              "collector and run its young generation less often (see docs/operations.md)")
def worker(app_spec: str, broker: str | None, datadir: str | None, instance_id: str | None,
           web_port: int | None, web_host: str | None, loglevel: str,
           gc_tuning: bool) -> None:
    """Run the app's agents until Ctrl-C or SIGTERM (then commit and exit 0)."""
    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    app = load_app(app_spec)
    from eoflow._runtime.worker import Worker

    try:
        settings = app.settings.with_overrides(
            **_settings_overrides(broker, datadir, instance_id, web_port, web_host))
        runner = Worker(app, settings)
        if gc_tuning:
            tune_gc()
        asyncio.run(_run_until_signal(runner))
    except EoflowError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


#: Allocations (net of frees) between two collections of the youngest generation; Python's
#: default is 700. A worker allocates a few objects per record, so at the default the
#: collector ran every ~200 records, and a full collection every ~25,000.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Set up Python's cyclic garbage collector for a long-running worker process.

    The app, eoflow and its libraries are loaded by now: what they built lives as long as
    the process, yet every full collection walked it again (100,000-170,000 objects, a
    few tens of ms each). ``gc.freeze()`` moves it to a generation the collector never
    scans; it is still freed by reference counting when dropped (only reference cycles
    among frozen objects would stay). The young generation is then collected every
    :data:`GC_YOUNG_THRESHOLD` allocations rather than 700. Measured in
    docs/benchmarks.md ("Garbage collection"); ``eoflow worker --no-gc-tuning`` turns it
    off. Process-wide, so only the worker command does it, not an embedded Worker.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


async def _run_until_signal(runner: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    await runner.run()


@main.command()
@click.argument("topic")
@click.argument("value")
@click.option("--key", help="record key (UTF-8)")
@click.option("--partition", type=int, help="partition (default: hash of the key)")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="a record header (repeatable)")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="send the record this many times")
@click.option("-A", "--app", "app_spec", help="take broker and serializers from this app")
@click.option("--broker", help="kafka://host:port")
def send(topic: str, value: str, key: str | None, partition: int | None,
         headers: tuple[str, ...], repeat: int, app_spec: str | None,
         broker: str | None) -> None:
    """Produce a record to TOPIC (for demos and debugging)."""
    from eoflow._settings import parse_broker
    from eoflow._tools import send_one

    app = load_app(app_spec) if app_spec else None
    bootstrap = broker or os.environ.get("EOFLOW_BROKER") or (
        app.settings.broker if app else "kafka://127.0.0.1:9092")
    topic_obj = app.topics.get(topic) if app else None
    header_list = [_header(h) for h in headers]
    try:
        if topic_obj is not None:
            key_bytes, value_bytes = (
                None if key is None else _encode_text(topic_obj.key_codec, key),
                _encode_text(topic_obj.value_codec, value))
        else:
            key_bytes, value_bytes = (key.encode() if key else None), value.encode()
        for _ in range(repeat):
            meta = asyncio.run(send_one(parse_broker(bootstrap), topic, key_bytes,
                                        value_bytes, partition=partition,
                                        headers=header_list or None,
                                        client_options=app.settings.client_options
                                        if app else None))
            click.echo(f"sent to {topic}[{meta[0]}]@{meta[1]}")
    except EoflowError as exc:
        raise click.ClickException(str(exc)) from exc


def _header(text: str) -> tuple[str, bytes]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"header {text!r}: use NAME=VALUE")
    return name, value.encode()


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="module[:attribute] of the App")
def agents(app_spec: str) -> None:
    """List the app's agents: name, topics, concurrency, sinks."""
    app = load_app(app_spec)
    for spec in app.agents.values():
        topics = ", ".join(n for t in spec.topics for n in t.names)
        sinks = ", ".join(getattr(s, "name", None) or repr(s) for s in spec.sink)
        click.echo(f"{spec.name}\ttopics: {topics}\tconcurrency: {spec.concurrency}"
                   + (f"\tsink: {sinks}" if sinks else ""))
    for timer in app.timers:
        click.echo(f"{timer.name}\t{timer.kind}"
                   + (f" every {timer.interval:g}s" if timer.interval else "")
                   + (f" {timer.cron.expression!r}" if timer.cron else ""))


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="module[:attribute] of the App")
def tables(app_spec: str) -> None:
    """List the app's tables: name, kind, changelog topic, window."""
    app = load_app(app_spec)
    for table in app.tables.values():
        kind = type(table).__name__
        window = table.windowed
        described = "" if window is None else (
            f"\t{window.spec.describe()} grace={window.grace:g}s "
            f"expires={window.expires:g}s")
        click.echo(f"{table.name}\t{kind}\tchangelog: "
                   f"{app.settings.changelog_topic(table.name)}{described}")


def _encode_text(codec: Any, text: str) -> bytes:
    """The command line's text as the topic would carry it: read by the topic's codec
    (so a Record topic takes the record's JSON, checked), else as JSON or a plain string."""
    try:
        return bytes(codec.dumps(codec.loads(text.encode())))
    except ValueError:  # not JSON: a plain string
        return bytes(codec.dumps(text))


def _json_or_str(value: str) -> Any:
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value


@main.command("verify")
@click.option("-A", "--app", "app_spec", required=True, help="module[:attribute] of the App")
@click.option("--inputs", "inputs_spec", required=True, metavar="MODULE:FUNCTION",
              help="a function returning (topic, key, value) tuples (it may take --records)")
@click.option("--records", default=1000, show_default=True, help="inputs to ask for")
@click.option("--broker", help="kafka://host:port to run the chaos run on (default: the "
              "app's, or $EOFLOW_BROKER); its topics are namespaced, the app's are untouched")
@click.option("--workers", default=2, show_default=True)
@click.option("--kills", default=4, show_default=True, help="kill -9 during the chaos run")
@click.option("--seed", default=1, show_default=True)
@click.option("--rate", default=200.0, show_default=True, help="inputs per second")
@click.option("--timeout", default=180.0, show_default=True, help="seconds to drain")
@click.option("--unordered", is_flag=True, help="compare each key's values as a multiset")
@click.option("--session-timeout", type=float, help="for the chaos workers (a shorter one "
              "makes a verify run quicker, where the app does not set its own)")
@click.option("--transaction-timeout", type=float, help="for the chaos workers, likewise")
@click.option("--ignore", multiple=True, metavar="NAME",
              help="a topic or table left out of the comparison (repeatable): what timers "
              "write, which follows the wall clock")
def verify_command(app_spec: str, inputs_spec: str, records: int, broker: str | None,
                   workers: int, kills: int, seed: int, rate: float, timeout: float,
                   unordered: bool, session_timeout: float | None,
                   transaction_timeout: float | None, ignore: tuple[str, ...]) -> None:
    """Check that the app is exactly once under kill -9, rebalances and a zombie.

    Runs the inputs through the app undisturbed (twice, broker-less) and through worker
    processes on a broker under faults, and compares every topic and table. Exit code 0:
    the same; 1: differences (printed), or the app is not deterministic.
    """
    from eoflow._settings import parse_broker
    from eoflow._verify import load_inputs, verify

    app = load_app(app_spec)
    bootstrap = parse_broker(broker or os.environ.get("EOFLOW_BROKER") or app.settings.broker)
    try:
        inputs = load_inputs(inputs_spec, records)
        report = asyncio.run(verify(app_spec, app, inputs, bootstrap=bootstrap,
                                    workers=workers, kills=kills, seed=seed, rate=rate,
                                    timeout=timeout, unordered=unordered, log=click.echo,
                                    ignore=ignore,
                                    settings={k: str(v) for k, v in (
                                        ("session_timeout", session_timeout),
                                        ("transaction_timeout", transaction_timeout))
                                        if v is not None}))
    except EoflowError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report.text())
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="module[:attribute] of the App")
@click.option("--broker", help="kafka://host:port (default: $EOFLOW_BROKER, then the app's)")
def status(app_spec: str, broker: str | None) -> None:
    """Print the app's group: members, their partitions, lag and last commit."""
    from eoflow._status import describe, render

    app = load_app(app_spec)
    try:
        view = asyncio.run(describe(app, broker or os.environ.get("EOFLOW_BROKER")))
    except EoflowError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(render(view))


@main.group()
def table() -> None:
    """Read committed table contents (from local stores or the changelog)."""


@table.command("get")
@click.option("-A", "--app", "app_spec", required=True)
@click.argument("table_name")
@click.argument("key")
@click.option("--datadir", help="the worker's data directory")
@click.option("--from-changelog", is_flag=True, help="read the changelog, not local stores")
@click.option("--broker", help="kafka://host:port (with --from-changelog)")
def table_get(app_spec: str, table_name: str, key: str, datadir: str | None,
              from_changelog: bool, broker: str | None) -> None:
    """Print the committed value of KEY in TABLE_NAME."""
    app = load_app(app_spec)
    tbl = _table(app, table_name)
    contents = _read(app, tbl, datadir, from_changelog, broker)
    wanted = _json_or_str(key) if tbl.key_codec.name == "json" else key
    found = [(k, v) for k, v in _decoded(tbl, contents)
             if (k[0] if tbl.windowed is not None else k) == wanted]
    if not found:
        raise click.ClickException(f"key {key!r} not found in table {table_name!r}")
    for k, v in found:
        click.echo(_show(tbl, k, v) if tbl.windowed is not None else _value(v))


@table.command("dump")
@click.option("-A", "--app", "app_spec", required=True)
@click.argument("table_name")
@click.option("--datadir", help="the worker's data directory")
@click.option("--from-changelog", is_flag=True, help="read the changelog, not local stores")
@click.option("--broker", help="kafka://host:port (with --from-changelog)")
def table_dump(app_spec: str, table_name: str, datadir: str | None, from_changelog: bool,
               broker: str | None) -> None:
    """Print every committed key and value of TABLE_NAME, one per line."""
    app = load_app(app_spec)
    tbl = _table(app, table_name)
    contents = _read(app, tbl, datadir, from_changelog, broker)
    if tbl.windowed is None:
        for key, value in sorted(contents.items()):
            click.echo(f"{key.decode(errors='replace')}\t{value.decode(errors='replace')}")
        return
    for k, v in sorted(_decoded(tbl, contents), key=lambda kv: (repr(kv[0][0]), kv[0][1])):
        click.echo(_show(tbl, k, v))


def _decoded(tbl: Any, contents: dict[bytes, bytes]) -> list[tuple[Any, Any]]:
    decoded = (tbl.decode_changelog(k, v) for k, v in contents.items())
    present = [d for d in decoded if d is not None]
    return present if tbl.windowed is None else list(tbl.windowed.windows_of(present))


def _value(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) else value


def _show(tbl: Any, key: Any, value: Any) -> str:
    """A windowed table's entry: key, window bounds in UTC, value."""
    from datetime import datetime

    user_key, window = key

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    import json

    closing = "]" if tbl.windowed.spec.inclusive_end else ")"
    return (f"{json.dumps(user_key)}\t[{stamp(window.start)}, {stamp(window.end)}{closing}\t"
            f"{_value(value)}")


def _read(app: App, tbl: Any, datadir: str | None, from_changelog: bool,
          broker: str | None) -> dict[bytes, bytes]:
    from eoflow._tools import read_table

    try:
        return read_table(app, tbl, datadir=datadir, from_changelog=from_changelog,
                          broker=broker or os.environ.get("EOFLOW_BROKER"))
    except EoflowError as exc:
        raise click.ClickException(str(exc)) from exc


def _table(app: App, name: str) -> Any:
    try:
        return app.tables[name]
    except KeyError:
        raise click.ClickException(
            f"app {app.id!r} has no table {name!r} (tables: {sorted(app.tables)})") from None


if __name__ == "__main__":  # pragma: no cover
    try:
        main()
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from exc
