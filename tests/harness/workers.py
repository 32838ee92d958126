"""``eoflow worker`` subprocesses for the harness: start, kill -9, SIGTERM, SIGSTOP/CONT.

``Workers(system="faust")`` starts faust-streaming workers of ``faust_app`` instead (from
the bench venv, ``$EO_FAUST_BIN``, default ``bench/.venv/bin/faust``), each with its own
data directory and web port; everything else is the same.

Each worker runs in its own session (process group), logs stdout+stderr to a file per
start, and keeps its data directory per instance id across restarts. :meth:`Workers.close`
(use the pool as a context manager) SIGKILLs whatever is still running, also on failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REPO_ROOT", "SYSTEMS", "WorkerProc", "Workers"]

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULT_LINE = "eoflow: fault injected at"
#: The systems the harness can run, and the log line that says a worker's signal
#: handlers are installed (a SIGTERM before that kills it with the default action).
SYSTEMS = {"eoflow": " starting (", "faust": "[^Worker]: Starting..."}
FAUST_APP = "tests.harness.faust_app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerProc:
    instance_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    datadir: Path
    fault: str | None = None
    stopped: bool = False  # SIGSTOPped

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def fault_fired(self) -> bool:
        return FAULT_LINE in self.log()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Workers:
    """A pool of worker processes of one app (module ``app``, env ``env``)."""

    workdir: Path
    env: Mapping[str, str]
    app: str = "tests.harness.eo_app"
    system: str = "eoflow"
    procs: list[WorkerProc] = field(default_factory=list)
    kills: int = 0
    starts: int = 0

    def start(self, instance_id: str, *, fault: str | None = None, fault_after: int = 0,
              datadir: Path | None = None, extra_env: Mapping[str, str] | None = None,
              ) -> WorkerProc:
        """Start a worker; ``fault`` sets EOFLOW_FAULT (and EOFLOW_FAULT_AFTER).

        The data directory defaults to one per instance id, kept across restarts.
        """
        self.starts += 1
        datadir = datadir or self.workdir / "data" / instance_id
        log_path = self.workdir / "logs" / f"{self.starts:03d}-{instance_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        env.pop("EOFLOW_FAULT", None)
        env.pop("EOFLOW_FAULT_AFTER", None)
        if fault:
            env["EOFLOW_FAULT"] = fault
            env["EOFLOW_FAULT_AFTER"] = str(fault_after)
        cmd = self._command(instance_id, datadir, env)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        worker = WorkerProc(instance_id, proc, log_path, datadir, fault)
        self.procs.append(worker)
        return worker

    def _command(self, instance_id: str, datadir: Path, env: dict[str, str]) -> list[str]:
        loglevel = os.environ.get("EO_LOGLEVEL", "info")
        if self.system == "faust":
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
            faust = os.environ.get("EO_FAUST_BIN", str(REPO_ROOT / "bench/.venv/bin/faust"))
            datadir.parent.mkdir(parents=True, exist_ok=True)  # faust makes one level only
            return [faust, "-A", FAUST_APP, "--datadir", str(datadir), "worker",
                    "-l", loglevel, "--web-port", str(_free_port())]
        if self.system != "eoflow":
            raise ValueError(f"unknown system {self.system!r}; use one of {list(SYSTEMS)}")
        return [sys.executable, "-m", "eoflow.cli", "worker", "-A", self.app,
                "--broker", f"kafka://{env['EO_BROKER_ADDR']}", "--datadir", str(datadir),
                "--instance-id", instance_id, "--loglevel", loglevel]

    def started(self, worker: WorkerProc) -> bool:
        """Has the worker installed its signal handlers (logged its start line)?"""
        return SYSTEMS[self.system] in worker.log()

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.procs if w.alive]

    def datadirs(self) -> list[Path]:
        return sorted({w.datadir for w in self.procs})

    def kill(self, worker: WorkerProc) -> None:
        """kill -9 the worker (by pid) and reap it."""
        if worker.alive:
            if worker.stopped:
                self.cont(worker)
            os.kill(worker.pid, signal.SIGKILL)
            self.kills += 1
        worker.proc.wait(10)

    def wait_started(self, worker: WorkerProc, timeout: float = 20.0) -> None:
        """Until the worker has installed its signal handlers (it logs "starting").

        A SIGTERM that arrives while Python is still importing kills the process with
        the default action, which says nothing about eoflow.
        """
        deadline = time.monotonic() + timeout
        while worker.alive and not self.started(worker):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def term(self, worker: WorkerProc, timeout: float = 60.0) -> int:
        """SIGTERM (final commit, clean exit); returns the exit code."""
        self.wait_started(worker)
        if worker.alive:
            os.kill(worker.pid, signal.SIGTERM)
        return self.wait(worker, timeout)

    def dump_tasks(self, worker: WorkerProc) -> None:
        """Have the worker print its asyncio task stacks to its log (see eo_app).

        eoflow only: faust_app has no SIGUSR1 handler (the signal would kill it)."""
        if self.system == "eoflow" and worker.alive and not worker.stopped and self.started(worker):
            os.kill(worker.pid, signal.SIGUSR1)

    def stop(self, worker: WorkerProc) -> None:
        os.kill(worker.pid, signal.SIGSTOP)
        worker.stopped = True

    def cont(self, worker: WorkerProc) -> None:
        os.kill(worker.pid, signal.SIGCONT)
        worker.stopped = False

    def wait(self, worker: WorkerProc, timeout: float) -> int:
        """Wait for the worker to exit; raises TimeoutError with its log tail."""
        try:
            return worker.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"worker {worker.instance_id} (pid {worker.pid}) still "
                               f"running after {timeout}s:\n{worker.tail()}") from None

    def term_all(self, timeout: float = 60.0) -> dict[str, int]:
        live = self.alive()
        for w in live:
            self.wait_started(w)
            if w.stopped:
                self.cont(w)
            os.kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        return {w.instance_id: self.wait(w, max(1.0, deadline - time.monotonic()))
                for w in live}

    def close(self) -> None:
        """SIGKILL every worker still running (safe to call more than once)."""
        for w in self.procs:
            if w.alive:
                with suppress(ProcessLookupError):
                    os.killpg(w.pid, signal.SIGKILL)
                w.proc.wait(10)

    def describe(self) -> str:
        return "\n".join(f"{w.instance_id} pid={w.pid} rc={w.returncode} "
                         f"fault={w.fault} log={w.log_path}" for w in self.procs)

    @contextmanager
    def running(self) -> Iterator[Workers]:
        try:
            yield self
        finally:
            self.close()
