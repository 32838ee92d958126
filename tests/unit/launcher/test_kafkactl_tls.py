"""The TLS material a SASL_SSL broker is started with, checked without a JVM: a client
built from the broker's ``ssl_context()`` completes a handshake with a server holding the
broker certificate, verifying the chain and the 127.0.0.1 / localhost names."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tools.kafka.kafkactl import KafkaBroker

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, name: str) -> str:
    """Handshake over a local socket pair; return the subject CN the client verified."""
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=name) as c:
            cert = c.getpeercert()
            c.sendall(b"x")
    finally:
        t.join(10)
    assert not errors, errors
    assert cert is not None
    return dict(x[0] for x in cert["subject"])["commonName"]


def test_broker_certificate_verifies_for_loopback_names(tmp_path: Path) -> None:
    broker = KafkaBroker(datadir=tmp_path, security="sasl_ssl")
    assert broker.sasl is not None
    broker.sasl.make_tls_material()
    tls = broker.tls_dir
    assert {p.name for p in tls.iterdir()} == {"ca.pem", "ca.key", "broker.pem",
                                                "broker.key", "broker.p12"}  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls / "broker.pem", tls / "broker.key")
    client = broker.client_config("alice", "SCRAM-SHA-256")["ssl_context"]
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    for name in ("127.0.0.1", "localhost"):
        assert _handshake(server, client, name) == "localhost"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "example.com")


def test_tls_material_is_made_once_per_data_dir(tmp_path: Path) -> None:
    broker = KafkaBroker(datadir=tmp_path, security="sasl_ssl")
    assert broker.sasl is not None
    broker.sasl.make_tls_material()
    ca = broker.ca_file.read_bytes()
    broker.sasl.make_tls_material()
    assert broker.ca_file.read_bytes() == ca
