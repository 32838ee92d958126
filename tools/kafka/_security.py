"""SASL_SSL for a local broker: a throwaway CA and broker certificate, SCRAM users, ACLs.

The client listener speaks SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN) with a broker
certificate for 127.0.0.1/localhost signed by a CA made at first start under
``<datadir>/tls``. The users of :data:`SASL_USERS` exist for both SCRAM mechanisms from the
moment the storage is formatted; ``admin`` (and the broker's own user) are super users when
the StandardAuthorizer is on, everyone else gets only what ACLs grant.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

from tools.kafka._errors import KafkaError

SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: Users of a ``security="sasl_ssl"`` broker besides the broker's own (:data:`BROKER_USER`).
SASL_USERS = ("admin", "alice", "bob")
BROKER_USER = "broker"
SUPER_USER = "admin"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required"
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


# --------------------------------------------------------------------------- TLS material


def make_tls_material(directory: Path, keystore_password: str) -> dict[str, Path]:
    """Create (once) a CA and a broker certificate for localhost/127.0.0.1 under
    ``directory`` with ``openssl``; return their paths. Existing material is reused.

    Files: ``ca.pem`` (the CA certificate clients trust), ``broker.pem`` / ``broker.key``
    and the broker's PKCS12 keystore ``broker.p12`` (password ``keystore_password``).
    """
    names = {"ca": "ca.pem", "ca_key": "ca.key", "broker_cert": "broker.pem",
             "broker_key": "broker.key", "keystore": "broker.p12"}  # fmt: skip
    paths = {k: directory / v for k, v in names.items()}
    if all(p.is_file() for p in paths.values()):
        return paths
    tmp = directory.parent / f"{directory.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    openssl = _OpenSsl(tmp)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "3650", "-subj", "/CN=eoflow test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    (tmp / "broker.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key",
            "-out", "broker.csr", "-subj", "/CN=localhost")  # fmt: skip
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "broker.pem", "-days", "3650",
            "-extfile", "broker.ext")  # fmt: skip
    openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key",
            "-certfile", "ca.pem", "-name", "broker", "-out", "broker.p12",
            "-passout", f"pass:{keystore_password}")  # fmt: skip
    for p in tmp.iterdir():
        if p.suffix in (".csr", ".ext", ".srl"):
            p.unlink()
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return paths


class _OpenSsl:
    def __init__(self, cwd: Path) -> None:
        exe = shutil.which("openssl")
        if exe is None:
            raise KafkaError("openssl is needed to make the TLS certificates; not on PATH")
        self.exe, self.cwd = exe, cwd

    def __call__(self, *args: str) -> None:
        proc = subprocess.run(
            [self.exe, *args], cwd=self.cwd, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise KafkaError(f"openssl {' '.join(args[:2])} failed:\n{proc.stderr[-2000:]}")


# --------------------------------------------------------------------------- SASL_SSL


class SaslSsl:
    """The SASL_SSL side of one broker: its users' passwords, its TLS files and every setting
    that follows from them (server, storage format, the ACL tool, aiokafka clients).

    The passwords must stay the same for the life of a data dir (SCRAM credentials are
    written into the metadata log when the storage is formatted); the broker keeps them in
    its state file.
    """

    def __init__(self, tls_dir: Path, passwords: dict[str, str], *, authorizer: bool) -> None:
        self.tls_dir = tls_dir
        self.authorizer = authorizer
        self.passwords = dict(passwords)
        for name in (BROKER_USER, *SASL_USERS, "keystore"):
            self.passwords.setdefault(name, f"{name}-{secrets.token_hex(8)}")

    @property
    def users(self) -> dict[str, str]:
        """Client users and their passwords (not the broker's own user)."""
        return {u: self.passwords[u] for u in SASL_USERS}

    @property
    def super_users(self) -> list[str]:
        return [f"User:{BROKER_USER}", f"User:{SUPER_USER}"]

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def make_tls_material(self) -> None:
        make_tls_material(self.tls_dir, self.passwords["keystore"])

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext that trusts the broker's CA (made when it first starts)."""
        if not self.ca_file.is_file():
            raise KafkaError(
                f"no CA certificate at {self.ca_file}: it is made when the broker first "
                "starts (or call make_tls_material)"
            )
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client_config(self, user: str, mechanism: str, password: str | None) -> dict[str, Any]:
        """aiokafka keyword arguments (without ``bootstrap_servers``)."""
        if user not in self.passwords and password is None:
            raise KafkaError(f"unknown SASL user {user!r} (users: {', '.join(SASL_USERS)})")
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user] if password is None else password,
            "ssl_context": self.ssl_context(),
        }

    def server_properties(self, port: int, controller_port: int, host: str) -> dict[str, str]:
        """What replaces and adds to the plaintext server.properties."""
        me = f'username="{BROKER_USER}" password="{self.passwords[BROKER_USER]}"'
        plain_users = " ".join(f'user_{u}="{self.passwords[u]}"' for u in (BROKER_USER,
                                                                          *SASL_USERS))
        settings = {
            # Clients and the broker itself talk SASL_SSL. The controller listener is
            # SASL_PLAINTEXT with PLAIN (SCRAM credentials live in the metadata log, which a
            # controller cannot read before it has a quorum), on loopback only.
            "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{host}:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": f"{_SCRAM_LOGIN} {me};",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": f"{_SCRAM_LOGIN} {me};",
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                f"{_PLAIN_LOGIN} {me} {plain_users};",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                f'{_PLAIN_LOGIN} {me} user_{BROKER_USER}="{self.passwords[BROKER_USER]}";',
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.tls_dir / "broker.p12"),
            "ssl.keystore.password": self.passwords["keystore"],
            "ssl.key.password": self.passwords["keystore"],
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
        }  # fmt: skip
        if self.authorizer:
            settings["authorizer.class.name"] = STANDARD_AUTHORIZER
            settings["super.users"] = ";".join(self.super_users)
            settings["allow.everyone.if.no.acl.found"] = "false"
        return settings

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments creating every user for both SCRAM mechanisms."""
        args: list[str] = []
        for user in (BROKER_USER, *SASL_USERS):
            for mech in SCRAM_MECHANISMS:
                args += ["--add-scram", f"{mech}=[name={user},password={self.passwords[user]}]"]
        return args

    def admin_properties(self) -> dict[str, str]:
        """Client properties for Kafka's own tools (``kafka-acls``), as the super user."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": (
                f'{_SCRAM_LOGIN} username="{SUPER_USER}" '
                f'password="{self.passwords[SUPER_USER]}";'
            ),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
        }


def acl_args(
    principal: str,
    operations: str | list[str],
    *,
    topic: str | None = None,
    group: str | None = None,
    transactional_id: str | None = None,
    cluster: bool = False,
    prefixed: bool = False,
    deny: bool = False,
    host: str = "*",
) -> list[str]:
    """``kafka-acls --add`` arguments (see :meth:`KafkaBroker.add_acl`)."""
    if not principal.startswith("User:"):
        principal = f"User:{principal}"
    args = ["--add", "--force"]
    args += ["--deny-principal" if deny else "--allow-principal", principal]
    args += ["--deny-host" if deny else "--allow-host", host]
    for op in [operations] if isinstance(operations, str) else operations:
        args += ["--operation", op]
    resources = {"--topic": topic, "--group": group, "--transactional-id": transactional_id}
    named = [a for flag, name in resources.items() if name is not None for a in (flag, name)]
    if cluster:
        named.append("--cluster")
    if not named:
        raise KafkaError("add_acl: give a topic, group, transactional_id or cluster=True")
    if prefixed:
        named += ["--resource-pattern-type", "prefixed"]
    return args + named
