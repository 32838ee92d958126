"""Fault injection for crash tests: kill the process at a named point.

Production code calls :func:`fault_point` at the places a crash is interesting
("before_store_write", "during_restore", ...). It does nothing unless the environment
variable ``EOFLOW_FAULT`` names that point, in which case the process SIGKILLs itself, just
like ``kill -9`` from outside: no ``finally`` blocks, no flushing, no atexit handlers.

``EOFLOW_FAULT_AFTER=N`` lets the first N hits of the point pass and kills on hit N+1
(default 0: the first hit kills). Hits are counted per process and per point name.

Before dying the process writes one line ``eoflow: fault injected at <name>`` straight to
file descriptor 2, so a test can tell an injected crash from an accidental one.

In-process, :func:`set_hook` installs a callable that every fault point calls with its
name first; the broker-less test driver uses it to crash a worker at a chosen point.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

__all__ = ["FAULT_AFTER_ENV", "FAULT_ENV", "POINTS", "fault_point", "set_hook"]

#: Every fault point, in the order an interval passes them.
POINTS = ("before_offsets", "before_commit", "after_commit", "before_store_write",
          "during_restore")

FAULT_ENV = "EOFLOW_FAULT"
FAULT_AFTER_ENV = "EOFLOW_FAULT_AFTER"

_hits: dict[str, int] = {}
_lock = threading.Lock()
_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Call ``hook(name)`` at every fault point (None removes it)."""
    global _hook
    _hook = hook


def fault_point(name: str) -> None:
    """SIGKILL this process if ``EOFLOW_FAULT`` equals ``name`` (after the allowed hits).

    Cheap when no fault is configured: one environment lookup. Safe to call from any
    thread.
    """
    if _hook is not None:
        _hook(name)
    if os.environ.get(FAULT_ENV) != name:
        return
    allowed = int(os.environ.get(FAULT_AFTER_ENV, "0") or "0")
    with _lock:
        hits = _hits.get(name, 0)
        _hits[name] = hits + 1
    if hits < allowed:
        return
    os.write(2, f"eoflow: fault injected at {name}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
