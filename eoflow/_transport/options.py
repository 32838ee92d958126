"""Client options passed through to aiokafka, checked before any client is built.

Settings carry ``consumer_options`` and ``producer_options`` (dicts of aiokafka keyword
arguments). eoflow sets some options itself because exactly-once depends on them
(``isolation_level``, ``enable_auto_commit``, ``transactional_id``, ...) or because a
setting of its own owns them (``session_timeout_ms`` is ``session_timeout``): those are
refused with the setting to use instead. Anything else must be a keyword argument of
aiokafka's client, with a value of the type of its default; a bad value that aiokafka
itself refuses is reported when the client is built (:func:`refused`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from eoflow.errors import ConfigurationError

__all__ = ["check_consumer_options", "check_producer_options", "refused"]

#: Options eoflow sets on every consumer, and what to use instead (None: nothing).
_CONSUMER_OWNED: dict[str, str | None] = {
    "bootstrap_servers": "the broker setting",
    "group_id": "the app id",
    "group_instance_id": "the instance_id setting",
    "client_id": None,
    "enable_auto_commit": None,
    "isolation_level": None,
    "auto_offset_reset": "the auto_offset_reset setting",
    "session_timeout_ms": "the session_timeout setting",
    "max_poll_interval_ms": "the max_poll_interval setting",
    "partition_assignment_strategy": None,
    "key_deserializer": "the topic's key_serializer",
    "value_deserializer": "the topic's value_serializer",
}
#: Options eoflow sets on its producer.
_PRODUCER_OWNED: dict[str, str | None] = {
    "bootstrap_servers": "the broker setting",
    "client_id": None,
    "acks": None,
    "enable_idempotence": "processing_guarantee",
    "transactional_id": "the instance_id setting",
    "transaction_timeout_ms": "the transaction_timeout setting",
    "compression_type": "the compression_type setting",
    "key_serializer": "the topic's key_serializer",
    "value_serializer": "the topic's value_serializer",
}


def check_consumer_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as a dict, or :class:`ConfigurationError` naming the bad one."""
    return _check("consumer_options", AIOKafkaConsumer, _CONSUMER_OWNED, options)


def check_producer_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as a dict, or :class:`ConfigurationError` naming the bad one."""
    return _check("producer_options", AIOKafkaProducer, _PRODUCER_OWNED, options)


def refused(setting: str, options: Mapping[str, Any], exc: BaseException) -> ConfigurationError:
    """aiokafka refused to build a client with ``options``: say which setting to fix."""
    return ConfigurationError(
        f"{setting}={dict(options)!r}: aiokafka refused them ({type(exc).__name__}: {exc}); "
        "fix the value it names")


def _check(setting: str, client: Any, owned: dict[str, str | None],
           options: Mapping[str, Any]) -> dict[str, Any]:
    params = {name: p for name, p in inspect.signature(client.__init__).parameters.items()
              if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for name, value in options.items():
        if name in owned:
            instead = owned[name]
            raise ConfigurationError(
                f"{setting}: {name!r} is set by eoflow"
                + (f"; use {instead}" if instead else " (exactly-once depends on it)")
                + f" instead of {setting}")
        param = params.get(name)
        if param is None:
            close = difflib.get_close_matches(name, params, n=1)
            raise ConfigurationError(
                f"{setting}: {name!r} is not an option of aiokafka's {client.__name__}"
                + (f"; did you mean {close[0]!r}?" if close else ""))
        _check_type(setting, name, value, param.default)
    return dict(options)


def _check_type(setting: str, name: str, value: Any, default: Any) -> None:
    """A value of the type of the option's default (ints where floats are fine)."""
    if default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        raise ConfigurationError(
            f"{setting}: {name}={value!r} should be {_KINDS[type(default)]} like its default "
            f"{default!r}")


_KINDS = {bool: "true or false", int: "a number", float: "a number", str: "a string"}
