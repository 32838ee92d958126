"""What every bench app shares: its configuration (from the environment) and the
"first input consumed" marker the driver uses as the start of the throughput clock.

The transforms are the same code for every system so that only the framework differs:
  passthrough: value["pad"] upper-cased, re-serialized as JSON, sent to the output topic;
  count:       counts[key] += 1, emit {"ts": value["ts"], "count": counts[key]}.
  count-tumbling / count-hopping: a windowed count (WINDOW_SIZE s windows, hopping every
               WINDOW_STEP s, kept WINDOW_EXPIRES s past their end) on the record's Kafka
               timestamp (its event time); per input, for each window holding it
               (tumbling: one, hopping: two), emit {"start": window start in ms, "count":
               the window's count so far}. No "ts": Quix's window count() does not carry
               the input value, so these workloads have no latency run.
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
#: count-tumbling / count-hopping (seconds; Quix takes milliseconds).
WINDOW_SIZE, WINDOW_STEP, WINDOW_EXPIRES = 1.0, 0.5, 10.0
TUMBLING = WORKLOAD == "count-tumbling"
WINDOWED = WORKLOAD in ("count-tumbling", "count-hopping")
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


def seen(value: Any) -> None:
    """Mark the first record (for systems whose windowed count runs no user code)."""
    if not _marked:
        mark_first()


def windowed(start_ms: int, n: int) -> dict[str, Any]:
    """The output of the windowed counts: the window's start (ms) and its count so far."""
    if not _marked:
        mark_first()
    return {"start": start_ms, "count": n}
