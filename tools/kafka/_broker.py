"""One Apache Kafka node (KRaft, combined broker+controller) on 127.0.0.1, run from the jars.

The data dir holds everything of a broker: ``server.properties`` and the log config
(rewritten on every start), ``broker.json`` (ports, version, security and passwords, so a
restart, also from another process, comes back the same), ``data/`` (Kafka's log.dirs),
``logs/server.log``, ``broker.out`` (the JVM's output), ``broker.pid`` and ``tls/``.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.kafka import _config as config
from tools.kafka._errors import KafkaError
from tools.kafka._jars import (
    KAFKA_VERSION,
    VERSION_ENV,
    ensure_libs,
    find_java,
    major_version,
    resolve_version,
)
from tools.kafka._probe import probe, wait_until
from tools.kafka._process import (
    HOST,
    JvmProcess,
    disown,
    free_port,
    free_ports,
    own,
    port_in_use,
    tail_file,
    tail_text,
)
from tools.kafka._security import SUPER_USER, SaslSsl, acl_args

SECURITY_MODES = ("plaintext", "sasl_ssl")
STATE_FILE = "broker.json"


class KafkaBroker:
    """One Apache Kafka broker+controller (KRaft combined mode) on 127.0.0.1.

    ``port=None`` picks a free port (or reuses the one recorded in an existing data dir);
    ``datadir=None`` uses a fresh temporary directory, deleted by :meth:`close`.

    ``version``: "3.9.2", "4.3.1", "3", "4", ... (default ``$EOFLOW_KAFKA_VERSION``, else the
    version the data dir was made with, else :data:`KAFKA_VERSION`). A data dir is only ever
    started with the version that formatted it.

    ``security="sasl_ssl"``: the client listener is SASL_SSL (SCRAM-SHA-256/512, PLAIN) with
    the users of :data:`SASL_USERS` (passwords in :attr:`users`); ``authorizer=True`` also
    turns on the StandardAuthorizer (super users ``broker`` and ``admin``; see
    :meth:`add_acl`). :meth:`client_config` gives the matching aiokafka settings.

    All methods block; from async code use ``await asyncio.to_thread(broker.restart)``.
    """

    def __init__(
        self,
        port: int | None = None,
        datadir: Path | str | None = None,
        *,
        heap: str = "512m",
        version: str | None = None,
        security: str | None = None,
        authorizer: bool | None = None,
    ) -> None:
        self._owns_datadir = datadir is None
        self.datadir = (
            Path(tempfile.mkdtemp(prefix="eoflow-kafka-"))
            if datadir is None
            else Path(datadir).resolve()
        )
        self.heap, self.min_heap = heap, "64m"
        state = config.read_state(self.datadir / STATE_FILE)
        self._made_by: str | None = state.get("version")
        self.version = resolve_version(version or os.environ.get(VERSION_ENV) or self._made_by)
        self.port: int = port if port is not None else int(state.get("port") or free_port())
        self.controller_port: int = int(state.get("controller_port") or 0)
        # A single node is its own quorum and cluster; _cluster.ClusterNode sets these.
        self.node_id = 1
        self.voters: str | None = None
        self.cluster_id: str | None = None
        self.replication_factor = 1
        self.security: str = (security or state.get("security") or "plaintext").lower()
        if self.security not in SECURITY_MODES:
            raise KafkaError(f"security must be one of {SECURITY_MODES}, not {security!r}")
        self.authorizer = bool(state.get("authorizer", False) if authorizer is None
                               else authorizer)  # fmt: skip
        if self.authorizer and self.security != "sasl_ssl":
            raise KafkaError("authorizer=True needs security='sasl_ssl'")
        self.sasl: SaslSsl | None = None
        if self.security == "sasl_ssl":
            self.sasl = SaslSsl(self.tls_dir, state.get("passwords") or {},
                                authorizer=self.authorizer)  # fmt: skip
        self._jvm = JvmProcess(self.datadir / "broker.pid", str(self.config_file))
        self._detached = False

    # ---------------------------------------------------------------- where things are
    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def major(self) -> int:
        return major_version(self.version)

    @property
    def config_file(self) -> Path:
        return self.datadir / "server.properties"

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
        return self.datadir / "broker.out"

    @property
    def tls_dir(self) -> Path:
        return self.datadir / "tls"

    @property
    def pid(self) -> int | None:
        """Pid of the running broker JVM, or None."""
        return self._jvm.pid

    def is_running(self) -> bool:
        return self.pid is not None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(bootstrap={self.bootstrap!r}, "
                f"version={self.version!r}, datadir={str(self.datadir)!r})")  # fmt: skip

    # ---------------------------------------------------------------- clients
    @property
    def security_protocol(self) -> str:
        return "SASL_SSL" if self.sasl else "PLAINTEXT"

    @property
    def users(self) -> dict[str, str]:
        """SASL users and their passwords (not the broker's own user); {} for plaintext."""
        return self.sasl.users if self.sasl else {}

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed the broker's certificate (SASL_SSL)."""
        return self._need_sasl("ca_file").ca_file

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting :attr:`ca_file` (made at the first start)."""
        return self._need_sasl("ssl_context").ssl_context()

    def client_config(
        self, user: str = SUPER_USER, mechanism: str = "SCRAM-SHA-512", password: str | None = None
    ) -> dict[str, Any]:
        """aiokafka keyword arguments to reach this broker: ``AIOKafkaProducer(**cfg)``.

        SASL_SSL: as ``user`` (default the super user) with ``mechanism``, and the user's
        password unless ``password`` is given. Plaintext: just ``bootstrap_servers``.
        """
        cfg: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.sasl:
            cfg.update(self.sasl.client_config(user, mechanism, password))
        return cfg

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Start the broker (no-op if it is already running) and wait until it is usable:
        it accepts connections, a transactional producer can commit and the group
        coordinator answers. Raises KafkaError with the tail of the broker log on failure
        or timeout; a JVM that did not become ready is stopped."""
        deadline = time.monotonic() + timeout
        if self.is_running():
            self.wait_ready(deadline)
            return self
        self.launch()
        try:
            self.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        self._jvm.stop(timeout)
        disown(self)

    def kill(self) -> None:
        """SIGKILL the broker JVM: no clean shutdown (the next start recovers its logs)."""
        self._jvm.kill()
        disown(self)

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
        disown(self)
        self._jvm.detach()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.stdout_file, self.log_dir / "server.log"):
            tail = tail_file(path, lines)
            if tail:
                parts.append(f"--- {path} (tail)\n{tail}")
        return "\n".join(parts) or "(no broker output)"

    # ---------------------------------------------------------------- ACLs and tools
    def add_acl(self, principal: str, operations: str | list[str], **resource: Any) -> None:
        """Add an ACL with Kafka's own ``kafka-acls`` tool, run as the super user ``admin``.

        ``principal`` is "User:alice" (or just "alice"); ``operations`` e.g. "Read" or
        ["Write", "Describe"] or "All"; then one or more resources: ``topic=``, ``group=``,
        ``transactional_id=``, ``cluster=True`` ("*" means every name; ``prefixed=True``
        makes the names prefixes); ``deny=True`` for a DENY rule, ``host=``.
        Needs ``security="sasl_ssl", authorizer=True``.
        """
        if not self.authorizer:
            raise KafkaError("add_acl needs KafkaBroker(security='sasl_ssl', authorizer=True)")
        self.acls(*acl_args(principal, operations, **resource))

    def acls(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``kafka-acls`` with ``args`` (e.g. "--list") as ``admin``; return its stdout."""
        sasl = self._need_sasl("acls()")
        props = self.datadir / "admin-client.properties"
        config.write_private(props, config.props_text(sasl.admin_properties()))
        main = "kafka.admin.AclCommand" if self.major == 3 else "org.apache.kafka.tools.AclCommand"
        args = ("--bootstrap-server", self.bootstrap, "--command-config", str(props), *args)
        proc = self.run_tool(main, list(args), timeout=timeout)
        if proc.returncode != 0:
            raise KafkaError(f"kafka-acls {' '.join(args[4:])} failed (rc={proc.returncode}):\n"
                             + tail_text(proc.stdout + proc.stderr, 30))  # fmt: skip
        return proc.stdout

    def run_tool(
        self, main: str, args: list[str], *, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run one of Kafka's command line tools, a main class from this version's jars
        (e.g. ``org.apache.kafka.tools.FeatureCommand``), logging WARN to stderr."""
        cmd = [find_java(), "-Xmx256m", self._logging_opt(console=True),
               "-cp", f"{ensure_libs(self.version)}/*", main, *args]  # fmt: skip
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise KafkaError(f"{main} did not finish in {timeout:.0f} s") from exc

    # ---------------------------------------------------------------- config
    def node_spec(self) -> config.NodeSpec:
        voters = self.voters or f"{self.node_id}@{HOST}:{self.controller_port}"
        return config.NodeSpec(self.node_id, self.port, self.controller_port, self.data_dir,
                               voters, self.replication_factor)  # fmt: skip

    def server_properties(self) -> dict[str, str]:
        """The broker's server.properties (written to the data dir on every start)."""
        settings = config.server_properties(self.node_spec())
        if self.sasl:
            settings.update(self.sasl.server_properties(self.port, self.controller_port, HOST))
        return settings

    def write_config(self) -> Path:
        """Write :meth:`server_properties` to :attr:`config_file` (done on every start)."""
        config.write_private(self.config_file, "# generated by tools/kafka; rewritten on "
                             "every start\n" + config.props_text(self.server_properties()))
        return self.config_file

    # ---------------------------------------------------------------- start, step by step
    def launch(self) -> None:
        """Start the JVM without waiting for it (:meth:`start` = launch + wait_ready).

        1. refuse a busy port or a data dir another Kafka version formatted;
        2. pick the controller port (once; it is kept in broker.json);
        3. make the TLS material (SASL_SSL), write broker.json, server.properties, log config;
        4. format the storage on the first start (SCRAM users included);
        5. spawn the JVM, with a watchdog unless detached.
        """
        if port_in_use(self.port):
            raise KafkaError(f"port {self.port} is already in use (another broker?)")
        formatted = (self.data_dir / "meta.properties").is_file()
        made_by = self._made_by or KAFKA_VERSION
        if formatted and made_by != self.version:
            raise KafkaError(
                f"{self.datadir} holds a Kafka {made_by} broker; starting it as {self.version}"
                f" is not supported (delete the data dir or ask for version {made_by!r})"
            )
        libs = ensure_libs(self.version)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._pick_controller_port()
        if self.sasl:
            self.sasl.make_tls_material()
        self._made_by = self.version
        self._write_state()
        self.write_config()
        if not formatted:
            self._format()
        self._jvm.spawn(self._jvm_command(libs), cwd=self.datadir, output=self.stdout_file,
                        header=f"starting Kafka {self.version}", watch=not self._detached)
        if not self._detached:
            own(self)

    def wait_ready(self, deadline: float) -> None:
        """Wait until the broker is usable (see :meth:`start`); ``deadline`` is monotonic."""
        wait_until(self._ready_check, deadline, [self], f"broker on {self.bootstrap}")

    def raise_if_exited(self) -> None:
        code = self._jvm.exit_code()
        if code is not None:
            raise KafkaError(f"broker {self.bootstrap} exited with code {code} during start\n"
                             + self.log_tail())  # fmt: skip
        if not self.is_running():
            raise KafkaError(f"broker {self.bootstrap} is not running\n{self.log_tail()}")

    def _ready_check(self, timeout: float) -> str | None:
        if not port_in_use(self.port):
            return "broker does not accept connections yet"
        return probe(self.bootstrap, timeout, self.client_config())

    def _pick_controller_port(self) -> None:
        if not self.controller_port or port_in_use(self.controller_port):
            self.controller_port = free_ports(1, {self.port})[0]

    def _jvm_command(self, libs: Path) -> list[str]:
        return [
            find_java(), f"-Xmx{self.heap}", f"-Xms{self.min_heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", self._logging_opt(console=False),
            f"-Dkafka.logs.dir={self.log_dir}",
            *os.environ.get("EOFLOW_KAFKA_JVM_OPTS", "").split(),
            "-cp", f"{libs}/*", "kafka.Kafka", str(self.config_file),
        ]  # fmt: skip

    def _write_state(self) -> None:
        state: dict[str, Any] = {"port": self.port, "controller_port": self.controller_port,
                                 "version": self.version, "node_id": self.node_id}  # fmt: skip
        if self.sasl:
            state.update(security=self.security, authorizer=self.authorizer,
                         passwords=self.sasl.passwords)  # fmt: skip
        config.write_private(self.datadir / STATE_FILE, json.dumps(state, indent=1) + "\n")

    def _format(self) -> None:
        cluster_id = self.cluster_id or config.new_cluster_id()
        args = ["format", "-t", cluster_id, "-c", str(self.config_file), "--ignore-formatted",
                *(self.sasl.format_args() if self.sasl else [])]  # fmt: skip
        proc = self.run_tool("kafka.tools.StorageTool", args)
        with open(self.stdout_file, "a") as out:
            out.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise KafkaError(f"kafka-storage format failed (rc={proc.returncode}):\n"
                             + tail_text(proc.stdout + proc.stderr, 40))  # fmt: skip

    def _logging_opt(self, *, console: bool) -> str:
        """The JVM option pointing log4j (Kafka 3) or log4j2 (Kafka 4) at a config written
        here: the broker's files under :attr:`log_dir`, or WARN to stderr for a tool."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.major == 3:
            path = self.datadir / ("log4j-tool.properties" if console else "log4j.properties")
            path.write_text(config.tool_log4j_properties() if console
                            else config.log4j_properties(self.log_dir))  # fmt: skip
            return f"-Dlog4j.configuration={path.as_uri()}"
        path = self.datadir / ("log4j2-tool.xml" if console else "log4j2.xml")
        path.write_text(config.tool_log4j2_xml() if console
                        else config.log4j2_xml(self.log_dir))  # fmt: skip
        return f"-Dlog4j2.configurationFile={path}"

    def _need_sasl(self, what: str) -> SaslSsl:
        if self.sasl is None:
            raise KafkaError(f"{what} needs a KafkaBroker(security='sasl_ssl')")
        return self.sasl
