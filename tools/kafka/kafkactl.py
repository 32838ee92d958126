"""Run a real, single-node Apache Kafka broker (KRaft combined mode) without Docker.

Stdlib only. Usable as a module::

    from tools.kafka.kafkactl import KafkaBroker

    broker = KafkaBroker()          # free port, temporary data dir
    broker.start()                  # blocks until a transactional producer can initialise
    print(broker.bootstrap)         # "127.0.0.1:PORT"
    broker.restart()                # same port, same data dir (topics and offsets survive)
    broker.stop()

and as a CLI::

    python tools/kafka/kafkactl.py start|stop|status [--port 9092] [--datadir .eoflow/kafka]

The broker jars are resolved once with Maven (``tools/kafka/pom.xml``) into
``${EOFLOW_KAFKA_CACHE:-~/.cache/eoflow}/kafka-<version>/libs``; later starts need no network.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
REPO_ROOT = HERE.parent.parent
DEFAULT_CLI_DATADIR = REPO_ROOT / ".eoflow" / "kafka"
DEFAULT_CLI_PORT = 9092
HOST = "127.0.0.1"

PID_FILE = "broker.pid"
STATE_FILE = "broker.json"
STDOUT_FILE = "broker.out"


def kafka_version() -> str:
    """The Kafka version pinned in pom.xml (single source of truth)."""
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text())
    if not m:
        raise RuntimeError(f"no <kafka.version> in {POM}")
    return m.group(1)


KAFKA_VERSION = kafka_version()


class KafkaError(RuntimeError):
    """The broker could not be provisioned, started or stopped."""


# --------------------------------------------------------------------------- jars


def cache_root() -> Path:
    return Path(os.environ.get("EOFLOW_KAFKA_CACHE") or Path.home() / ".cache" / "eoflow")


def libs_dir() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_libs(*, quiet: bool = False) -> Path:
    """Return the directory with the broker jars, running Maven only if it is incomplete.

    A marker file (holding the pom's hash) is written after a successful copy, so a second
    call is a file read: no Maven, no network. Concurrent callers serialise on a lock file.
    """
    libs = libs_dir()
    marker = libs.parent / ".complete"
    digest = _pom_digest()
    if marker.is_file() and marker.read_text().strip() == digest and libs.is_dir():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == digest and libs.is_dir():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaError("Maven (mvn) is needed once to download the Kafka jars; not on PATH")
        tmp = libs.parent / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            print(
                f"eoflow: downloading Apache Kafka {KAFKA_VERSION} jars into {libs} (once)",
                file=sys.stderr,
            )
        cmd = [
            mvn, "-q", "-B", "-f", str(POM),
            "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        jars = list(tmp.glob("kafka_2.13-*.jar")) if tmp.is_dir() else []
        if proc.returncode != 0 or not jars:
            shutil.rmtree(tmp, ignore_errors=True)
            raise KafkaError(
                f"mvn failed (rc={proc.returncode}): {' '.join(cmd)}\n"
                + _tail_text(proc.stdout + proc.stderr, 40)
            )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        marker.write_text(digest + "\n")
    return libs


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java not found (install Java 17+ or set JAVA_HOME)")
    return java


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return _tail_text(f.read().decode("utf-8", "replace"), lines)
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
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


def _cluster_id() -> str:
    """A random Kafka cluster id (base64url of a UUID). Like Kafka's ``Uuid.randomUuid()``,
    never one starting with "-": StorageTool's argument parser would read it as an option
    (about 1 start in 64 failed with "argument --cluster-id/-t: expected one argument")."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# Runs in a tiny separate Python process next to every broker owned by a Python process.
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


# All brokers started (and not detached) by this process: stopped at interpreter exit.
_OWNED: set[KafkaBroker] = set()
_OWNED_LOCK = threading.Lock()


@atexit.register
def _stop_owned_brokers() -> None:
    with _OWNED_LOCK:
        brokers = list(_OWNED)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.close()


# --------------------------------------------------------------------------- broker


class KafkaBroker:
    """One Apache Kafka broker+controller (KRaft combined mode) on 127.0.0.1.

    ``port=None`` picks a free port (or reuses the one recorded in an existing data dir);
    ``datadir=None`` uses a fresh temporary directory, deleted by :meth:`close`.
    The controller listens on a second port, recorded in ``<datadir>/broker.json`` so that a
    restart (also from another process, e.g. the CLI) comes back on the same ports.

    All methods block; from async code use ``await asyncio.to_thread(broker.restart)``.
    """

    def __init__(
        self,
        port: int | None = None,
        datadir: Path | str | None = None,
        *,
        heap: str = "512m",
    ) -> None:
        self._owns_datadir = datadir is None
        self.datadir = (
            Path(tempfile.mkdtemp(prefix="eoflow-kafka-"))
            if datadir is None
            else Path(datadir).resolve()
        )
        self.heap = heap
        state = self._read_state()
        self.port: int = port if port is not None else int(state.get("port") or free_port())
        self.controller_port: int = int(state.get("controller_port") or 0)
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_fd: int | None = None
        self._detached = False

    # ---------------------------------------------------------------- paths and props
    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.datadir / PID_FILE

    @property
    def log_dir(self) -> Path:
        """Broker log4j output (server.log, controller.log, ...)."""
        return self.datadir / "logs"

    @property
    def data_dir(self) -> Path:
        """Kafka's log.dirs (the partitions and the KRaft metadata log)."""
        return self.datadir / "data"

    @property
    def stdout_file(self) -> Path:
        return self.datadir / STDOUT_FILE

    @property
    def pid(self) -> int | None:
        """Pid of the running broker JVM, or None."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        pid = self._read_pid()
        if pid is not None and self._is_our_jvm(pid):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    def __repr__(self) -> str:
        return f"KafkaBroker(bootstrap={self.bootstrap!r}, datadir={str(self.datadir)!r})"

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Start the broker (no-op if it is already running) and wait until it is usable.

        Usable means: it accepts connections and a transactional producer can initialise
        (so the transaction coordinator is loaded). Raises KafkaError with the tail of the
        broker log on failure or timeout; a JVM that did not become ready is killed.
        """
        if self.is_running():
            self._wait_ready(time.monotonic() + timeout)
            return self
        self._clear_stale_pid()
        if port_in_use(self.port):
            raise KafkaError(f"port {self.port} is already in use (another broker?)")
        libs = ensure_libs()
        java = find_java()
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.controller_port or port_in_use(self.controller_port):
            self.controller_port = free_port()
            while self.controller_port == self.port:
                self.controller_port = free_port()
        self._write_state()
        props = self._write_config()
        log4j = self._write_log4j()
        cp = f"{libs}/*"
        if not (self.data_dir / "meta.properties").is_file():
            self._format(java, cp, props)

        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            f"-Dkafka.logs.dir={self.log_dir}",
            *os.environ.get("EOFLOW_KAFKA_JVM_OPTS", "").split(),
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ]
        with open(self.stdout_file, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting broker\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.datadir,
                start_new_session=True,  # Ctrl-C of the parent must not hit the JVM
                close_fds=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        if not self._detached:
            with _OWNED_LOCK:
                _OWNED.add(self)
            self._start_watchdog(self._proc.pid)
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        pid = self.pid
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._alive(pid):
                time.sleep(0.1)
            if self._alive(pid):
                self._signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self._alive(pid):
                    time.sleep(0.05)
            if self._alive(pid):
                raise KafkaError(f"broker pid {pid} survived SIGKILL")
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=5)
            self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        with _OWNED_LOCK:
            _OWNED.discard(self)
        self._release_watchdog(detach=False)

    def restart(self, timeout: float = 60.0) -> KafkaBroker:
        """Stop and start again on the same port and data dir."""
        self.stop()
        return self.start(timeout=timeout)

    def close(self) -> None:
        """Stop, and delete the data dir if this object created it."""
        self.stop()
        if self._owns_datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def detach(self) -> None:
        """Leave the broker running when this Python process exits (used by the CLI)."""
        self._detached = True
        with _OWNED_LOCK:
            _OWNED.discard(self)
        self._release_watchdog(detach=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.stdout_file, self.log_dir / "server.log"):
            tail = _tail_file(path, lines)
            if tail:
                parts.append(f"--- {path} (tail)\n{tail}")
        return "\n".join(parts) or "(no broker output)"

    # ---------------------------------------------------------------- internals
    def _start_watchdog(self, pid: int) -> None:
        self._release_watchdog(detach=True)
        r, w = os.pipe()
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(r), str(pid), str(self.datadir)],
                pass_fds=(r,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
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

    def _read_state(self) -> dict[str, int]:
        try:
            data = json.loads((self.datadir / STATE_FILE).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_state(self) -> None:
        state = {"port": self.port, "controller_port": self.controller_port}
        (self.datadir / STATE_FILE).write_text(json.dumps(state) + "\n")

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_our_jvm(self, pid: int) -> bool:
        return _pid_alive(pid) and str(self.datadir / "server.properties") in _cmdline(pid)

    def _clear_stale_pid(self) -> None:
        pid = self._read_pid()
        if pid is not None and not self._is_our_jvm(pid):
            with contextlib.suppress(FileNotFoundError):
                self.pid_file.unlink()

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return _pid_alive(pid)

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        # The JVM leads its own session/process group (start_new_session=True).
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _format(self, java: str, cp: str, props: Path) -> None:
        cmd = [
            java, "-Xmx256m",
            "-Dlog4j.configuration=" + self._write_log4j(console=True).as_uri(),
            "-cp", cp, "kafka.tools.StorageTool",
            "format", "-t", _cluster_id(), "-c", str(props), "--ignore-formatted",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        with open(self.stdout_file, "a") as out:
            out.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise KafkaError(
                f"kafka-storage format failed (rc={proc.returncode}):\n"
                + _tail_text(proc.stdout + proc.stderr, 40)
            )

    def _write_config(self) -> Path:
        p, c = self.port, self.controller_port
        settings = {
            # KRaft, single combined node, loopback only.
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{c}",
            "listeners": f"PLAINTEXT://{HOST}:{p},CONTROLLER://{HOST}:{c}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # Single node: every replication factor / ISR is 1.
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            # Fast groups and fast abort of timed-out transactions (tests rely on this).
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
            "transaction.remove.expired.transaction.cleanup.interval.ms": "10000",
            # Small footprint.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "4",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "168",
            "log.retention.check.interval.ms": "300000",
        }
        path = self.datadir / "server.properties"
        body = "".join(f"{k}={v}\n" for k, v in settings.items())
        path.write_text("# generated by tools/kafka/kafkactl.py; rewritten on every start\n" + body)
        return path

    def _write_log4j(self, *, console: bool = False) -> Path:
        if console:  # for the one-shot StorageTool run
            path = self.datadir / "log4j-tool.properties"
            path.write_text(
                "log4j.rootLogger=WARN, stderr\n"
                "log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
                "log4j.appender.stderr.Target=System.err\n"
                "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
                "log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            )
            return path
        logs = str(self.log_dir).replace("\\", "/")
        lines = ["log4j.rootLogger=INFO, server"]
        for name, file in (
            ("server", "server.log"),
            ("controller", "controller.log"),
            ("stateChange", "state-change.log"),
            ("cleaner", "log-cleaner.log"),
            ("request", "kafka-request.log"),
        ):
            a = f"log4j.appender.{name}"
            lines += [
                f"{a}=org.apache.log4j.RollingFileAppender",
                f"{a}.File={logs}/{file}",
                f"{a}.MaxFileSize=20MB",
                f"{a}.MaxBackupIndex=2",
                f"{a}.layout=org.apache.log4j.PatternLayout",
                f"{a}.layout.ConversionPattern=[%d] %p %m (%c)%n",
            ]
        lines += [
            "log4j.logger.org.apache.kafka=INFO",
            "log4j.logger.kafka.request.logger=WARN, request",
            "log4j.additivity.kafka.request.logger=false",
            "log4j.logger.kafka.network.RequestChannel$=WARN, request",
            "log4j.additivity.kafka.network.RequestChannel$=false",
            "log4j.logger.org.apache.kafka.controller=INFO, controller",
            "log4j.additivity.org.apache.kafka.controller=false",
            "log4j.logger.kafka.controller=INFO, controller",
            "log4j.additivity.kafka.controller=false",
            "log4j.logger.kafka.log.LogCleaner=INFO, cleaner",
            "log4j.additivity.kafka.log.LogCleaner=false",
            "log4j.logger.state.change.logger=INFO, stateChange",
            "log4j.additivity.state.change.logger=false",
        ]
        path = self.datadir / "log4j.properties"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _wait_ready(self, deadline: float) -> None:
        last_error = "broker did not accept connections"
        while True:
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                raise KafkaError(
                    f"broker exited with code {proc.returncode} during start\n{self.log_tail()}"
                )
            if proc is None and not self.is_running():
                raise KafkaError(f"broker is not running\n{self.log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaError(
                    f"broker on {self.bootstrap} not ready in time: {last_error}\n"
                    + self.log_tail()
                )
            if port_in_use(self.port):
                err = _probe(self.bootstrap, min(remaining, 20.0))
                if err is None:
                    return
                last_error = err
            time.sleep(0.3)


# --------------------------------------------------------------------------- readiness


def _probe(bootstrap: str, timeout: float) -> str | None:
    """None if a transactional producer can initialise and the group coordinator answers.

    Runs in a separate thread with its own event loop, so it works from inside a running
    loop too. Without aiokafka, only checks that the port accepts connections.
    """
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        return None  # TCP connect already succeeded.

    result: list[str | None] = ["probe did not finish"]

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(_txn_probe(bootstrap), timeout))
            result[0] = None
        except BaseException as exc:  # report, caller retries
            result[0] = f"{type(exc).__name__}: {exc}"

    t = threading.Thread(target=run, name="kafka-ready-probe", daemon=True)
    t.start()
    t.join(timeout + 5)
    return result[0]


async def _txn_probe(bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"eoflow-ready-probe-{uuid.uuid4().hex[:8]}",
        request_timeout_ms=10000,
    )
    await producer.start()
    try:
        await producer.begin_transaction()  # waits for InitProducerId
        await producer.commit_transaction()
    finally:
        await producer.stop()

    # The group coordinator (and __consumer_offsets) is created lazily on first use; make
    # sure it is loaded too, so the first consumer group of a test does not see error 15.
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.find_coordinator("eoflow-ready-probe")
    finally:
        await admin.close()


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="kafkactl", description=f"local Apache Kafka {KAFKA_VERSION} (KRaft) for eoflow"
    )
    ap.add_argument("command", choices=["start", "stop", "status", "libs"])
    ap.add_argument("--port", type=int, default=None, help=f"default {DEFAULT_CLI_PORT}")
    ap.add_argument("--datadir", type=Path, default=DEFAULT_CLI_DATADIR)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args(argv)

    if args.command == "libs":
        print(ensure_libs())
        return 0
    datadir: Path = args.datadir
    port = args.port
    if port is None and not (datadir / STATE_FILE).is_file():
        port = DEFAULT_CLI_PORT
    broker = KafkaBroker(port=port, datadir=datadir)
    if args.command == "start":
        if broker.is_running():
            print(broker.bootstrap)
            print(f"already running (pid {broker.pid})", file=sys.stderr)
            return 0
        try:
            broker.start(timeout=args.timeout)
        except KafkaError as exc:
            print(f"kafkactl: {exc}", file=sys.stderr)
            return 1
        broker.detach()
        print(broker.bootstrap)
        print(f"pid {broker.pid}, data in {broker.datadir}, logs in {broker.log_dir}",
              file=sys.stderr)  # fmt: skip
        return 0
    if args.command == "stop":
        pid = broker.pid
        broker.stop()
        print("stopped" if pid else "not running", f"({broker.bootstrap})")
        return 0
    # status
    pid = broker.pid
    if pid is None:
        print(f"not running ({broker.bootstrap}, datadir {broker.datadir})")
        return 1
    print(f"running pid {pid} on {broker.bootstrap} (datadir {broker.datadir})")
    return 0


def main() -> None:
    sys.exit(_cli())


if __name__ == "__main__":
    main()


__all__ = [
    "KAFKA_VERSION",
    "KafkaBroker",
    "KafkaError",
    "ensure_libs",
    "free_port",
    "libs_dir",
]
