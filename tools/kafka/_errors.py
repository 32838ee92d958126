"""The launcher's one error: a broker or cluster could not be provisioned, started,
stopped or asked something. The message says which, and carries the tail of the broker log
when there is one."""

from __future__ import annotations


class KafkaError(RuntimeError):
    """The broker could not be provisioned, started, stopped or asked something."""


class KafkaProtocolError(KafkaError):
    """A broker answered a request with an error code."""

    def __init__(self, what: str, code: int, message: str | None = None) -> None:
        super().__init__(f"{what}: error {code}" + (f" ({message})" if message else ""))
        self.code = code
