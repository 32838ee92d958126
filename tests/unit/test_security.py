"""Credentials configured once on the App (or in EOFLOW_SASL_* / EOFLOW_SSL_*), checked
when they are made: each mistake is named before any connection (issue 14.1, 14.8)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

import eoflow
from eoflow._security import client_kwargs, credentials_from_env
from eoflow.errors import ConfigurationError


def test_sasl_over_tls_gives_every_client_the_same_settings() -> None:
    app = eoflow.App("secure", broker_credentials=eoflow.SASLCredentials("alice", "s3cret"))
    options = app.settings.client_options
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("alice",
                                                                                 "s3cret")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "s3cret" not in repr(app.settings.broker_credentials)


def test_sasl_plaintext_and_oauth() -> None:
    plain = client_kwargs(eoflow.SASLCredentials("u", "p", "PLAIN", ssl=None))
    assert plain["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in plain

    async def token() -> str:
        return "t0k3n"

    oauth = client_kwargs(eoflow.OAuthCredentials(token))
    assert oauth["sasl_mechanism"] == "OAUTHBEARER"
    assert oauth["security_protocol"] == "SASL_SSL"


def test_credentials_from_the_environment_and_an_argument_wins() -> None:
    env = {"EOFLOW_SASL_USERNAME": "bob", "EOFLOW_SASL_PASSWORD": "pw",
           "EOFLOW_SASL_MECHANISM": "SCRAM-SHA-256"}
    found = credentials_from_env(env)
    assert isinstance(found, eoflow.SASLCredentials)
    assert (found.username, found.mechanism, found.ssl is not None) == ("bob", "SCRAM-SHA-256",
                                                                         True)
    assert credentials_from_env({}) is None
    assert credentials_from_env({"EOFLOW_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **env}).ssl is None
    with pytest.raises(ConfigurationError, match="EOFLOW_SASL_USERNAME and EOFLOW_SASL_PASSWORD"):
        credentials_from_env({"EOFLOW_SECURITY_PROTOCOL": "SASL_SSL"})


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EOFLOW_SASL_USERNAME", "from-env")
    monkeypatch.setenv("EOFLOW_SASL_PASSWORD", "pw")
    assert eoflow.App("a").settings.broker_credentials.username == "from-env"  # type: ignore[union-attr]
    given = eoflow.SASLCredentials("from-code", "pw")
    assert eoflow.App("b", broker_credentials=given).settings.broker_credentials is given


@pytest.mark.parametrize(("make", "message"), [
    (lambda: eoflow.SASLCredentials("u", "p", "GSSAPI"), "SASL mechanism 'GSSAPI'"),
    (lambda: eoflow.SSLCredentials(cafile="/no/such/ca.pem"), "cafile '/no/such/ca.pem': no such"),
    (lambda: eoflow.SSLCredentials(keyfile=__file__), "keyfile without certfile"),
    (lambda: eoflow.App("x", broker_credentials=("user", "pw")), "use eoflow.SSLCredentials"),
])
def test_a_mistake_is_named_when_the_credentials_are_made(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_an_expired_client_certificate_is_named_with_its_date(tmp_path: Path) -> None:
    (tmp_path / "ca.cnf").write_text(
        "[ca]\ndefault_ca=d\n[d]\ndir=.\ndatabase=./index.txt\nnew_certs_dir=.\n"
        "serial=./serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n")
    (tmp_path / "index.txt").write_text("")
    (tmp_path / "serial").write_text("01\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "r.csr",
        "-subj", "/CN=client")
    run("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "key.pem", "-in", "r.csr",
        "-out", "cert.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z")
    with pytest.raises(ConfigurationError, match=r"cert.pem' expired on Jan  2 00:00:00 2020"):
        eoflow.SSLCredentials(certfile=str(tmp_path / "cert.pem"),
                              keyfile=str(tmp_path / "key.pem"))
