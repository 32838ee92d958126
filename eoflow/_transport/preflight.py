"""Check a worker's credentials against the cluster before anything else, so a wrong
password, an untrusted or expired certificate, or an unsupported mechanism fails at start
with a message that says which, instead of aiokafka's "Unable to bootstrap" after retries.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import errors as kerr
from aiokafka.conn import create_conn

from eoflow.errors import ConfigurationError

__all__ = ["check_credentials"]

_CONN_OPTIONS = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
                 "sasl_plain_password", "sasl_oauth_token_provider")


async def check_credentials(bootstrap: str, client_options: Mapping[str, Any],
                            who: str, timeout: float = 15.0) -> None:
    """Open one connection to the first reachable bootstrap server and authenticate.

    Raises :class:`ConfigurationError` when the broker refuses ``who`` (the credentials,
    described) or the TLS handshake fails; an unreachable server is left to the clients'
    own retries.
    """
    options = {k: v for k, v in client_options.items() if k in _CONN_OPTIONS}
    for server in bootstrap.split(","):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=int(timeout * 1000),
                                     **options)
        except (kerr.SaslAuthenticationFailed, kerr.AuthenticationFailedError,
                kerr.IllegalSaslStateError) as exc:
            raise ConfigurationError(f"broker {server} refused {who}: {exc}") from None
        except (kerr.UnsupportedSaslMechanismError, kerr.AuthenticationMethodNotSupported) \
                as exc:
            raise ConfigurationError(f"broker {server} does not accept the SASL mechanism of "
                                     f"{who}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigurationError(
                f"TLS with broker {server}: its certificate is not trusted ({exc.verify_message})"
                "; give the CA that signed it: SSLCredentials(cafile=...) or "
                "EOFLOW_SSL_CAFILE") from None
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"TLS handshake with broker {server} failed for {who}: {exc} (a client "
                "certificate the broker does not accept, or a listener that is not TLS)") \
                from None
        except (OSError, kerr.KafkaConnectionError, TimeoutError):
            continue  # not reachable now: the clients retry, and say so
        conn.close()
        return
