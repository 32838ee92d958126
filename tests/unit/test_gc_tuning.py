"""``eoflow worker`` tunes Python's garbage collector (``eoflow.cli.tune_gc``).

Each check runs in a fresh interpreter: freezing is process-wide, and this one is pytest's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def test_startup_objects_are_frozen_and_new_cycles_are_still_collected() -> None:
    """What startup built leaves the collector's scans; garbage cycles made while the
    worker runs are still found and freed (nothing new is frozen)."""
    out = _run("""
        import gc, weakref
        from eoflow.cli import GC_YOUNG_THRESHOLD, tune_gc
        tune_gc()
        assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        class Node: pass
        a, b = Node(), Node()
        a.other, b.other = b, a          # a cycle: only the collector frees it
        alive = weakref.ref(a)
        del a, b
        gc.collect()
        print("freed" if alive() is None else "leaked")
    """)
    assert out == "freed"

