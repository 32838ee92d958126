"""fault_point kills the process (SIGKILL) only at the configured point and hit."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eoflow._faults import fault_point
from eoflow._state.store import RocksDBPartitionStore, StoreIdentity

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
from eoflow._faults import fault_point
for i in range(3):
    fault_point("other")
    print("hit", i, flush=True)
    fault_point("here")
"""


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_unconfigured_fault_point_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EOFLOW_FAULT", raising=False)
    fault_point("before_store_write")


def test_configured_point_sigkills_on_first_hit() -> None:
    result = _run({"EOFLOW_FAULT": "here"})
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split("\n")[:-1] == ["hit 0"]
    assert "fault injected at here" in result.stderr


def test_fault_after_lets_n_hits_pass() -> None:
    result = _run({"EOFLOW_FAULT": "here", "EOFLOW_FAULT_AFTER": "2"})
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split("\n")[:-1] == ["hit 0", "hit 1", "hit 2"]


def test_other_point_named_does_not_kill() -> None:
    result = _run({"EOFLOW_FAULT": "nowhere"})
    assert result.returncode == 0


CRASH_SCRIPT = """
import os, signal, sys
from eoflow._state.store import RocksDBPartitionStore, StoreIdentity
store = RocksDBPartitionStore.open(sys.argv[1], StoreIdentity("app", "t", 0, 1))
store.apply({b"a": b"1", b"b": b"1"}, 5)
store.apply({b"a": b"2", b"b": None, b"c": b"2"}, 6)
os.kill(os.getpid(), signal.SIGKILL)  # crash right after the second write, no close
"""


@pytest.mark.parametrize(
    ("fault", "expected_items", "expected_offset"),
    [
        ("before_store_write", [(b"a", b"1"), (b"b", b"1")], 5),
        ("none", [(b"a", b"2"), (b"c", b"2")], 6),
    ],
)
def test_kill_9_leaves_old_or_new_batch_never_a_mix(
    tmp_path: Path, fault: str, expected_items: list[tuple[bytes, bytes]], expected_offset: int
) -> None:
    path = tmp_path / "store"
    env = {"PYTHONPATH": str(ROOT), "EOFLOW_FAULT": fault, "EOFLOW_FAULT_AFTER": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(path)],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL
    store = RocksDBPartitionStore.open(path, StoreIdentity("app", "t", 0, 1))
    try:
        assert list(store.items()) == expected_items
        assert store.changelog_offset == expected_offset
    finally:
        store.close()
