"""What ``eo_app`` and ``faust_app`` share, with no framework import.

The two apps under test must be the same program for the comparison to mean anything:
the same ``EO_*`` settings, the same handling of the input marks, the same record shapes
and the same aggregate ``fold`` (which the oracle uses too). Each app keeps only what its
framework's API needs (how an event exposes its partition and offset, how it sends).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


def env(name: str, default: str) -> str:
    """The ``EO_{name}`` environment variable, or ``default``."""
    return os.environ.get(f"EO_{name}", default)


APP_ID = env("APP_ID", "eo-harness")
PREFIX = env("PREFIX", APP_ID)
PARTITIONS = int(env("PARTITIONS", "4"))
BROKER = env("BROKER", "kafka://127.0.0.1:9092")
COMMIT_INTERVAL = float(env("COMMIT_INTERVAL", "0.1"))
SESSION_TIMEOUT = float(env("SESSION_TIMEOUT", "6.0"))
DELAY = float(env("DELAY", "0"))
SLOW_SECONDS = float(env("SLOW_SECONDS", "0"))
LARGE_BYTES = int(env("LARGE_BYTES", str(2 * 1024 * 1024)))
#: The eoflow App settings of every eoflow harness app (eo_app, features_app).
EOFLOW_SETTINGS: dict[str, Any] = {
    "broker": BROKER,
    "commit_interval": COMMIT_INTERVAL,
    "session_timeout": SESSION_TIMEOUT,
    "transaction_timeout": float(env("TXN_TIMEOUT", "20.0")),
    "max_retries": int(env("MAX_RETRIES", "3")),
}

_slowed: set[int] = set()  # ids of "slow": "once" inputs already slowed in this process


def fold(agg: dict[str, int], n: int) -> dict[str, int]:
    """One step of the per-key aggregate (the oracle uses the same function)."""
    if not agg:
        return {"sum": n, "count": 1, "min": n, "max": n}
    return {"sum": agg["sum"] + n, "count": agg["count"] + 1,
            "min": min(agg["min"], n), "max": max(agg["max"], n)}


async def act_on_marks(value: dict[str, Any]) -> None:
    """``EO_DELAY`` per input, then the ``raise`` and ``slow`` marks (see ``eo_app``)."""
    if DELAY:
        await asyncio.sleep(DELAY)
    if value.get("raise"):
        raise RuntimeError(f"poison input {value['id']}")
    if value.get("slow") is True or (value.get("slow") == "once"
                                     and value["id"] not in _slowed):
        _slowed.add(value["id"])
        await asyncio.sleep(SLOW_SECONDS)


def echo_value(value: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    """The ``echo`` record of an input; ``EO_LARGE_BYTES`` larger for a ``large`` mark."""
    out = {"id": value["id"], "key": value["key"], "n": value["n"], "p": partition,
           "o": offset}
    if value.get("large"):
        out["pad"] = "x" * LARGE_BYTES
    return out


def by_key_value(value: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    """The ``by-key`` record of an input (keyed by ``value["key"]``)."""
    return {"id": value["id"], "n": value["n"], "src": [partition, offset]}


def aggregate_value(value: dict[str, Any], agg: dict[str, int]) -> dict[str, Any]:
    """The ``aggregates`` record: the key's running aggregate after this ``by-key`` record."""
    return {"id": value["id"], "src": value["src"], **agg}
