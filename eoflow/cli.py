"""The ``eoflow`` command: ``worker``, ``send`` and ``table``."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from eoflow._app import App
from eoflow.errors import ConfigurationError, EoflowError

__all__ = ["load_app", "main"]


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
                        instance_id: str | None) -> dict[str, Any]:
    return {"broker": broker or os.environ.get("EOFLOW_BROKER"),
            "datadir": Path(datadir) if datadir else None,
            "instance_id": instance_id}


@click.group()
def main() -> None:
    """eoflow: exactly-once stream processing for Apache Kafka."""


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="module[:attribute] of the App")
@click.option("--broker", help="kafka://host:port (default: the app's, or $EOFLOW_BROKER)")
@click.option("--datadir", help="directory for table stores and the instance id")
@click.option("--instance-id", help="stable id of this worker (default: kept in --datadir)")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def worker(app_spec: str, broker: str | None, datadir: str | None, instance_id: str | None,
           loglevel: str) -> None:
    """Run the app's agents until Ctrl-C or SIGTERM (then commit and exit 0)."""
    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    app = load_app(app_spec)
    from eoflow._runtime.worker import Worker

    try:
        settings = app.settings.with_overrides(**_settings_overrides(broker, datadir, instance_id))
        runner = Worker(app, settings)
        asyncio.run(_run_until_signal(runner))
    except EoflowError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


async def _run_until_signal(runner: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
    await runner.run()


@main.command()
@click.argument("topic")
@click.argument("value")
@click.option("--key", help="record key (UTF-8)")
@click.option("-A", "--app", "app_spec", help="take broker and serializers from this app")
@click.option("--broker", help="kafka://host:port")
def send(topic: str, value: str, key: str | None, app_spec: str | None,
         broker: str | None) -> None:
    """Produce one record to TOPIC (for demos and debugging)."""
    from eoflow._settings import parse_broker
    from eoflow._tools import send_one

    app = load_app(app_spec) if app_spec else None
    bootstrap = broker or os.environ.get("EOFLOW_BROKER") or (
        app.settings.broker if app else "kafka://127.0.0.1:9092")
    topic_obj = app.topics.get(topic) if app else None
    try:
        if topic_obj is not None:
            key_bytes, value_bytes = topic_obj.encode(key, _json_or_str(value))
        else:
            key_bytes, value_bytes = (key.encode() if key else None), value.encode()
        meta = asyncio.run(send_one(parse_broker(bootstrap), topic, key_bytes, value_bytes))
    except EoflowError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sent to {topic}[{meta[0]}]@{meta[1]}")


def _json_or_str(value: str) -> Any:
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value


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
    wanted = tbl.key_codec.dumps(_json_or_str(key) if tbl.key_codec.name == "json" else key)
    if wanted not in contents:
        raise click.ClickException(f"key {key!r} not found in table {table_name!r}")
    click.echo(contents[wanted].decode(errors="replace"))


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
    for key, value in sorted(contents.items()):
        click.echo(f"{key.decode(errors='replace')}\t{value.decode(errors='replace')}")


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
