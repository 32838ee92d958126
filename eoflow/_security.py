"""Credentials for a secured Kafka cluster, configured once and given to every client.

``App(..., broker_credentials=...)`` takes one of:

* :class:`SSLCredentials`: TLS with a CA (``cafile``) and, for mutual TLS, a client
  certificate (``certfile``/``keyfile``), or a ready ``ssl.SSLContext``;
* :class:`SASLCredentials`: SASL ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``, over
  TLS (``ssl=SSLCredentials(...)``, the default: the system's CAs) or, with ``ssl=None``,
  in plaintext (``SASL_PLAINTEXT``);
* :class:`OAuthCredentials`: SASL ``OAUTHBEARER`` with an async token callback.

Without code, the same comes from the environment (:func:`credentials_from_env`):
``EOFLOW_SASL_MECHANISM``, ``EOFLOW_SASL_USERNAME``, ``EOFLOW_SASL_PASSWORD``,
``EOFLOW_SSL_CAFILE``, ``EOFLOW_SSL_CERTFILE``, ``EOFLOW_SSL_KEYFILE``,
``EOFLOW_SSL_KEY_PASSWORD``, and ``EOFLOW_SECURITY_PROTOCOL`` (``SSL``, ``SASL_SSL``,
``SASL_PLAINTEXT``; implied by the others when unset). An argument wins over the
environment. The worker, its restore readers and admin client, ``eoflow send/table/
status/verify`` and ``eoflow.testing``'s Kafka helpers all use them.

Files are checked when the credentials are made (they exist, the key matches the
certificate, the certificate has not expired), so a mistake fails at start, named.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eoflow.errors import ConfigurationError

__all__ = ["Credentials", "OAuthCredentials", "SASLCredentials", "SSLCredentials",
           "client_kwargs", "credentials_from_env"]

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SSLCredentials:
    """TLS: trust ``cafile`` (default: the system's CAs); present ``certfile``/``keyfile``
    for mutual TLS. Or pass a ready ``context``."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = field(default=None, repr=False)
    context: ssl.SSLContext | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.context is None:
            object.__setattr__(self, "context", self._build())

    def _build(self) -> ssl.SSLContext:
        for what, path in (("cafile", self.cafile), ("certfile", self.certfile),
                           ("keyfile", self.keyfile)):
            if path is not None and not os.path.isfile(path):
                raise ConfigurationError(f"SSL {what} {path!r}: no such file")
        if self.keyfile is not None and self.certfile is None:
            raise ConfigurationError("SSL keyfile without certfile: give both for mutual TLS")
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except ssl.SSLError as exc:
            raise ConfigurationError(f"SSL cafile {self.cafile!r}: not a CA certificate "
                                     f"({exc})") from None
        context.check_hostname = self.check_hostname
        if self.certfile is not None:
            _check_not_expired(self.certfile)
            try:
                context.load_cert_chain(self.certfile, self.keyfile, self.password)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigurationError(
                    f"SSL certfile {self.certfile!r} / keyfile {self.keyfile!r}: cannot load "
                    f"the client certificate ({exc}); a wrong key password, or a key that "
                    "does not match the certificate") from None
        return context


@dataclass(frozen=True)
class SASLCredentials:
    """SASL ``mechanism`` as ``username``; over TLS unless ``ssl=None``."""

    username: str
    password: str = field(repr=False)
    mechanism: str = "SCRAM-SHA-512"
    ssl: SSLCredentials | None = field(default_factory=SSLCredentials)

    def __post_init__(self) -> None:
        if self.mechanism not in SASL_MECHANISMS:
            raise ConfigurationError(
                f"SASL mechanism {self.mechanism!r}: use one of {', '.join(SASL_MECHANISMS)}"
                " (OAUTHBEARER: OAuthCredentials)")
        if not self.username:
            raise ConfigurationError("SASL username is empty")


@dataclass(frozen=True)
class OAuthCredentials:
    """SASL ``OAUTHBEARER``: ``token`` is an async callable returning a current token
    (cache and refresh it yourself: it is called on every new connection)."""

    token: Callable[[], Awaitable[str]]
    ssl: SSLCredentials | None = field(default_factory=SSLCredentials)


Credentials = SSLCredentials | SASLCredentials | OAuthCredentials


class _TokenProvider:
    """aiokafka's ``AbstractTokenProvider`` shape around a plain async callable."""

    def __init__(self, token: Callable[[], Awaitable[str]]) -> None:
        self._token = token

    async def token(self) -> str:
        return await self._token()

    def extensions(self) -> dict[str, str]:
        return {}


def client_kwargs(credentials: Credentials | None) -> dict[str, Any]:
    """The aiokafka keyword arguments for ``credentials`` (empty: plaintext)."""
    if credentials is None:
        return {}
    if isinstance(credentials, SSLCredentials):
        return {"security_protocol": "SSL", "ssl_context": credentials.context}
    tls = credentials.ssl
    kwargs: dict[str, Any] = {"security_protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT"}
    if tls is not None:
        kwargs["ssl_context"] = tls.context
    if isinstance(credentials, SASLCredentials):
        kwargs.update(sasl_mechanism=credentials.mechanism,
                      sasl_plain_username=credentials.username,
                      sasl_plain_password=credentials.password)
    else:
        kwargs.update(sasl_mechanism="OAUTHBEARER",
                      sasl_oauth_token_provider=_TokenProvider(credentials.token))
    return kwargs


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials from ``EOFLOW_SASL_*`` / ``EOFLOW_SSL_*`` / ``EOFLOW_SECURITY_PROTOCOL``
    (module docstring); None if none is set."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        return env.get(f"EOFLOW_{name}") or None

    protocol = (get("SECURITY_PROTOCOL") or "").upper() or None
    username = get("SASL_USERNAME")
    tls_set = any(get(n) for n in ("SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"))
    if protocol is None:
        protocol = "SASL_SSL" if username else ("SSL" if tls_set else "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    tls = SSLCredentials(cafile=get("SSL_CAFILE"), certfile=get("SSL_CERTFILE"),
                         keyfile=get("SSL_KEYFILE"), password=get("SSL_KEY_PASSWORD")) \
        if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return tls
    if protocol not in ("SASL_SSL", "SASL_PLAINTEXT"):
        raise ConfigurationError(f"EOFLOW_SECURITY_PROTOCOL={protocol!r}: use PLAINTEXT, SSL, "
                                 "SASL_SSL or SASL_PLAINTEXT")
    if username is None or get("SASL_PASSWORD") is None:
        raise ConfigurationError(f"EOFLOW_SECURITY_PROTOCOL={protocol}: set "
                                 "EOFLOW_SASL_USERNAME and EOFLOW_SASL_PASSWORD")
    return SASLCredentials(username, env["EOFLOW_SASL_PASSWORD"],
                           get("SASL_MECHANISM") or "SCRAM-SHA-512", ssl=tls)


def describe(credentials: Credentials | None) -> str:
    """For messages: who connects how (never the password)."""
    if credentials is None:
        return "plaintext, no credentials"
    if isinstance(credentials, SSLCredentials):
        return "SSL" + (f" with client certificate {credentials.certfile}"
                        if credentials.certfile else "")
    over = "SASL_SSL" if credentials.ssl else "SASL_PLAINTEXT"
    if isinstance(credentials, SASLCredentials):
        return f"{over} {credentials.mechanism} as {credentials.username!r}"
    return f"{over} OAUTHBEARER"


def _check_not_expired(certfile: str) -> None:
    """An expired client certificate fails every handshake with a vague TLS alert: say so
    here instead (best effort: ``ssl`` reads PEM certificates only privately)."""
    decode = getattr(ssl, "_ssl", None)
    not_after: str | None = None
    with contextlib.suppress(Exception):
        not_after = decode._test_decode_cert(certfile)["notAfter"]  # type: ignore[union-attr]
    if not_after is not None and ssl.cert_time_to_seconds(not_after) < time.time():
        raise ConfigurationError(f"SSL certfile {certfile!r} expired on {not_after}: renew "
                                 "the client certificate")
