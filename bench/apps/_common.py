"""What every bench app shares: its configuration (from the environment) and the
"first input consumed" marker the driver uses as the start of the throughput clock.

The transforms are the same code for every system so that only the framework differs:
  passthrough: value["pad"] upper-cased, re-serialized as JSON, sent to the output topic;
  count:       counts[key] += 1, emit {"ts": value["ts"], "count": counts[key]}.
"""

from __future__ import annotations

import os
import time
from typing import Any

BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:49092")
IN_TOPIC = os.environ.get("BENCH_IN", "bench-in")
OUT_TOPIC = os.environ.get("BENCH_OUT", "bench-out")
APP_ID = os.environ.get("BENCH_APP_ID", "bench")
WORKLOAD = os.environ.get("BENCH_WORKLOAD", "passthrough")  # or "count"
INTERVAL = float(os.environ.get("BENCH_INTERVAL", "1.0"))
GUARANTEE = os.environ.get("BENCH_GUARANTEE", "exactly_once")
DATADIR = os.environ.get("BENCH_DATADIR", "./bench-data")
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "8"))
_MARK = os.environ.get("BENCH_MARK")
_marked = False


def mark_first() -> None:
    """Record (once) the wall-clock time the first input record reached user code."""
    global _marked
    _marked = True
    if _MARK:
        with open(_MARK, "w") as f:
            f.write(repr(time.time()))


def passthrough(value: dict[str, Any]) -> dict[str, Any]:
    if not _marked:
        mark_first()
    value["pad"] = value["pad"].upper()
    return value


def counted(value: dict[str, Any], n: int) -> dict[str, Any]:
    if not _marked:
        mark_first()
    return {"ts": value["ts"], "count": n}
