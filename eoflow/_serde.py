"""Key and value serializers: ``"json"``, ``"raw"`` (bytes) and ``"str"`` (UTF-8).

Defaults follow Faust: raw keys, json values. A codec never sees ``None``: a missing key or
a tombstone value stays ``None`` on the wire and in the program.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

import orjson

from eoflow.errors import ConfigurationError, SerializationError

__all__ = ["Codec", "CodecName", "codec_for"]

CodecName = Literal["json", "raw", "str"]


class Codec(Protocol):
    """Turns Python objects into bytes and back."""

    name: str

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class _Json:
    """Compact JSON through orjson; objects orjson refuses fall back to the stdlib."""

    name = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return json.dumps(obj, separators=(",", ":")).encode()

    #: orjson's own function: no Python frame per record decoded.
    loads = staticmethod(orjson.loads)


class _Raw:
    name = "raw"

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        if isinstance(obj, str):
            return obj.encode()
        raise SerializationError(f"raw serializer needs bytes or str, got {type(obj).__name__}")

    def loads(self, data: bytes) -> Any:
        return data


class _Str:
    name = "str"

    def dumps(self, obj: Any) -> bytes:
        return str(obj).encode()

    def loads(self, data: bytes) -> Any:
        return data.decode()


_CODECS: dict[str, Codec] = {"json": _Json(), "raw": _Raw(), "str": _Str()}


def codec_for(name: str | Codec) -> Codec:
    """The codec called ``name``, or ``name`` itself if it already is a codec."""
    if not isinstance(name, str):
        return name
    try:
        return _CODECS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown serializer {name!r}: use one of {sorted(_CODECS)} or pass an object "
            "with dumps() and loads()") from None


def resolve_codec(serializer: str | Codec, typed: type | None, what: str) -> Codec:
    """The codec of a key or value: from its declared type (``key_type=``/``value_type=``:
    a Record, a dataclass, a pydantic model, str, bytes, int...) or its serializer."""
    if typed is None:
        return codec_for(serializer)
    from eoflow._models import codec_for_type

    try:
        return codec_for_type(typed)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc
