"""The JVMs the launcher starts: spawn, find by pid file, stop (SIGTERM then SIGKILL), and a
watchdog so that a JVM never outlives the Python process that owns it.

Every process is found and signalled by its pid, and only if its command line still holds
the marker it was started with (its data dir), so a reused pid is never signalled.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tools.kafka._errors import KafkaError

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, exclude: set[int] | None = None) -> list[int]:
    """``n`` distinct free ports, none of them in ``exclude``."""
    taken = set(exclude or ())
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in taken:
            taken.add(p)
            ports.append(p)
    return ports


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def tail_file(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return tail_text(f.read().decode("utf-8", "replace"), lines)
    except OSError:
        return ""


def in_parallel(fns: list[Callable[[], None]]) -> list[BaseException]:
    """Run the callables in threads; return the exceptions they raised."""
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(fn,), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- ownership


class Closable(Protocol):
    def close(self) -> None: ...


# Brokers started (and not detached) by this process: closed at interpreter exit.
_OWNED: set[Closable] = set()
_OWNED_LOCK = threading.Lock()


def own(obj: Closable) -> None:
    with _OWNED_LOCK:
        _OWNED.add(obj)


def disown(obj: Closable) -> None:
    with _OWNED_LOCK:
        _OWNED.discard(obj)


@atexit.register
def _close_owned() -> None:
    with _OWNED_LOCK:
        owned = list(_OWNED)
    # In parallel: the last node of a cluster stopped alone would wait for a quorum.
    in_parallel([obj.close for obj in owned])


# Runs in a tiny separate Python process next to every JVM owned by a Python process.
# It blocks reading a pipe whose write end only the owner holds: EOF means the owner is gone
# (even by SIGKILL), so the JVM is terminated too. b"d" means "detached: leave it running".
_WATCHDOG = """
import os, signal, sys, time
fd, pid, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = b""
try:
    while True:
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
if b"d" in data:
    sys.exit(0)
def ours():
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False
def kill(sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass
if ours():
    kill(signal.SIGTERM)
    end = time.monotonic() + 30
    while ours() and time.monotonic() < end:
        time.sleep(0.2)
    if ours():
        kill(signal.SIGKILL)
"""


# --------------------------------------------------------------------------- one JVM


class JvmProcess:
    """One JVM: started with :meth:`spawn`, recorded in ``pid_file``, recognised by
    ``marker`` in its command line (also from another Python process, e.g. the CLI)."""

    def __init__(self, pid_file: Path, marker: str) -> None:
        self.pid_file = pid_file
        self.marker = marker
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_fd: int | None = None

    @property
    def pid(self) -> int | None:
        """Pid of the running JVM, or None."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def exit_code(self) -> int | None:
        """The exit code if the JVM this object spawned has exited, else None."""
        return self._proc.poll() if self._proc is not None else None

    def spawn(self, cmd: list[str], *, cwd: Path, output: Path, header: str, watch: bool) -> int:
        """Start ``cmd`` in its own session, output appended to ``output``; with ``watch``
        a watchdog stops it when this Python process exits."""
        with contextlib.suppress(FileNotFoundError):
            if self.pid is None:
                self.pid_file.unlink()  # a stale pid file
        with open(output, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {header}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                start_new_session=True,  # Ctrl-C of the parent must not hit the JVM
                close_fds=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{self._proc.pid}\n")
        if watch:
            self._start_watchdog(self._proc.pid)
        return self._proc.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        pid = self.pid
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                self._kill(pid)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown. Idempotent."""
        pid = self.pid
        if pid is not None:
            self._kill(pid)
        self._reap()

    def detach(self) -> None:
        """Let the JVM outlive this Python process."""
        self._release_watchdog(detach=True)

    # ---------------------------------------------------------------- internals
    def _is_ours(self, pid: int) -> bool:
        return _pid_alive(pid) and self.marker in _cmdline(pid)

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return _pid_alive(pid)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill(self, pid: int) -> None:
        self._signal(pid, signal.SIGKILL)
        if not self._wait_gone(pid, 10.0):
            raise KafkaError(f"JVM pid {pid} survived SIGKILL")

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # The JVM leads its own session and process group (start_new_session=True).
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=5)
            self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self._release_watchdog(detach=False)

    def _start_watchdog(self, pid: int) -> None:
        self._release_watchdog(detach=True)
        r, w = os.pipe()
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(r), str(pid), self.marker],
                pass_fds=(r,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError:
            os.close(w)
            return
        finally:
            os.close(r)
        self._watchdog_fd = w

    def _release_watchdog(self, *, detach: bool) -> None:
        fd, self._watchdog_fd = self._watchdog_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                if detach:
                    os.write(fd, b"d")
                os.close(fd)
        wd, self._watchdog = self._watchdog, None
        if wd is not None:
            try:
                wd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                wd.kill()
                wd.wait()
