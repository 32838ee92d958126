"""Typed records: :class:`Record`, and :func:`codec_for_type` for topics and tables.

::

    class Click(eoflow.Record):
        user: str
        at: datetime
        tags: list[str] = []

    clicks = app.topic("clicks", value_type=Click)

A ``Record`` subclass is a dataclass (``__init__``, ``repr``, ``==``) whose fields are
checked on the way in and out: ``from_data`` turns a JSON object into an instance and says
which field of which class is wrong, ``to_representation`` turns an instance into JSON-ready
values. Each class gets one converter per field when it is declared (or, for a forward
reference, when first used); encoding and decoding then only call them.

Converters raise :class:`_Invalid`, which collects the path of the bad value (``referrer.
tags[2]``) on its way up; the public entry points turn it into ``SerializationError``.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import copy
import dataclasses
import enum
import functools
import inspect
import operator
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Self, TypeVar, dataclass_transform
from uuid import UUID

import orjson

from eoflow._serde import Codec
from eoflow.errors import ConfigurationError, SerializationError

__all__ = ["Record", "codec_for_type"]

T = TypeVar("T")
#: A value as declared -> its JSON-ready form (checking its type on the way).
Encoder = Callable[[Any], Any]
#: A JSON (or already typed) value -> the declared type; raises _Invalid.
Decoder = Callable[[Any], Any]
_MISSING: Any = object()


class _Invalid(Exception):
    """A value does not fit its declared type. ``path`` grows outward as it propagates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.segments: list[str] = []  # innermost first

    def at(self, segment: str) -> _Invalid:
        self.segments.append(segment)
        return self

    @property
    def path(self) -> str:
        return "".join(reversed(self.segments)).lstrip(".")


class _Unsupported(Exception):
    """A declared type has no converter."""


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:39] + '…'}"


def _expected(what: str, value: Any) -> _Invalid:
    if value is None:
        return _Invalid("null, but the type is not optional (declare it `T | None`)")
    return _Invalid(f"expected {what}, got {_show(value)}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not isinstance(tp, types.GenericAlias):
        return tp.__name__ if "<locals>" in tp.__qualname__ else tp.__qualname__
    return repr(tp).replace("typing.", "")


def _decode_error(tp: Any, exc: _Invalid) -> SerializationError:
    where = f" field '{exc.path}':" if exc.path else ""
    return SerializationError(f"invalid {_type_name(tp)}:{where} {exc.message}")


def _encode_error(tp: Any, exc: _Invalid) -> SerializationError:
    where = f" field '{exc.path}':" if exc.path else ""
    return SerializationError(f"cannot encode {_type_name(tp)}:{where} {exc.message}")


# -- scalar converters ------------------------------------------------------------------
def _same(value: Any) -> Any:
    return value


def _str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _expected("a string", value)


def _int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _expected("an integer", value)


def _float(value: Any) -> Any:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise _expected("a number", value)


def _bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise _expected("true or false", value)


def _textual(kind: type | tuple[type, ...], name: str, what: str, to_text: Callable[[Any], str],
             parse: Callable[[str], Any],
             exclude: type = types.NoneType) -> tuple[Encoder, Decoder]:
    """A type JSON carries as a string: ``to_text`` on the way out, ``parse`` on the way in.
    Values already of the type are taken as they are (``from_data`` of typed values)."""
    def encode(value: Any) -> Any:
        if isinstance(value, kind) and not isinstance(value, exclude):
            return to_text(value)
        raise _expected(name, value)

    def decode(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse(value)
            except (ValueError, ArithmeticError, SyntaxError):  # InvalidOperation too
                raise _Invalid(f"not {what}: {value!r:.60}") from None
        if isinstance(value, kind) and not isinstance(value, exclude):
            return value
        raise _expected(f"{what} string", value)
    return encode, decode


def _parse_date(text: str) -> date:
    if len(text) <= 10:
        return date.fromisoformat(text)
    at = datetime.fromisoformat(text)  # Faust writes a date as a datetime at midnight
    if at.time() != time() or at.utcoffset():
        raise ValueError(text)
    return at.date()


def _parse_bytes(text: str) -> bytes:
    if text[:2] in ("b'", 'b"'):  # Faust writes bytes as their repr; never valid base64
        value = ast.literal_eval(text)
        if isinstance(value, bytes):
            return value
    return base64.b64decode(text, validate=True)


_DATETIME = _textual(datetime, "a datetime", "an ISO 8601 datetime",
                     datetime.isoformat, datetime.fromisoformat)
_DATE = _textual(date, "a date", "an ISO 8601 date", date.isoformat, _parse_date,
                 exclude=datetime)
_TIME = _textual(time, "a time", "an ISO 8601 time", time.isoformat, time.fromisoformat)
_UUID = _textual(UUID, "a UUID", "a UUID", str, UUID)
_BYTES = _textual((bytes, bytearray, memoryview), "bytes", "base64",
                  lambda v: base64.b64encode(v).decode("ascii"), _parse_bytes)
_enc_decimal, _dec_decimal_text = _textual((Decimal, int), "a Decimal", "a decimal number",
                                           str, Decimal, exclude=bool)


def _dec_decimal(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = repr(value)  # a float by its shortest repr: 0.1 -> Decimal("0.1")
    return _dec_decimal_text(value)


_SCALARS: dict[Any, tuple[Encoder, Decoder]] = {
    Any: (_same, _same), object: (_same, _same), str: (_str, _str), int: (_int, _int),
    float: (_float, _float), bool: (_bool, _bool), bytes: _BYTES, datetime: _DATETIME,
    date: _DATE, time: _TIME, Decimal: (_enc_decimal, _dec_decimal), UUID: _UUID,
}


# -- composite converters ---------------------------------------------------------------
def _converter(tp: Any) -> tuple[Encoder, Decoder]:
    """The encoder and decoder for a declared type; _Unsupported if there is none."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _optional(*_converter(rest[0]))
        raise _Unsupported(f"{_type_name(tp)}: a union other than `T | None`; use Any")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if isinstance(tp, type) and (issubclass(tp, Record) or dataclasses.is_dataclass(tp)):
        return _model(tp)
    container = _CONTAINERS.get(origin or tp)
    if container is None:
        raise _Unsupported(_type_name(tp))
    return container(args)


def _optional(enc: Encoder, dec: Decoder) -> tuple[Encoder, Decoder]:
    return (lambda v: None if v is None else enc(v)), (lambda v: None if v is None else dec(v))


def _enum(cls: type[enum.Enum]) -> tuple[Encoder, Decoder]:
    def encode(value: Any) -> Any:
        if isinstance(value, cls):
            return value.value
        raise _expected(f"a {cls.__name__}", value)

    def decode(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise _Invalid(f"{value!r:.60} is not one of {allowed}") from None
    return encode, decode


def _model(cls: type) -> tuple[Encoder, Decoder]:
    def encode(value: Any) -> Any:
        if isinstance(value, cls):
            return _encode_obj(value)
        raise _expected(f"a {_type_name(cls)}", value)
    return encode, functools.partial(_decode_obj, cls)


def _each(fn: Callable[[Any], Any], items: Any) -> list[Any]:
    """``[fn(x) for x in items]``; on a bad item, find its index for the message."""
    try:
        return [fn(x) for x in items]
    except _Invalid:
        for i, x in enumerate(items):
            try:
                fn(x)
            except _Invalid as exc:
                raise exc.at(f"[{i}]") from None
        raise


def _sequence(args: tuple[Any, ...], kind: type, accept: tuple[type, ...],
              what: str) -> tuple[Encoder, Decoder]:
    enc, dec = _converter(args[0] if args else Any)
    wire = (list, tuple) if kind is not set and kind is not frozenset else (list, tuple, *accept)

    def encode(value: Any) -> Any:
        if not isinstance(value, accept):
            raise _expected(what, value)
        out = _each(enc, value)
        if kind in (set, frozenset):  # the same set gives the same bytes (table keys)
            with contextlib.suppress(TypeError):
                out.sort()
        return out

    def decode(value: Any) -> Any:
        if not isinstance(value, wire):
            raise _expected(f"a JSON array ({what})", value)
        items = _each(dec, value)
        return items if kind is list else kind(items)
    return encode, decode


def _fixed_tuple(args: tuple[Any, ...]) -> tuple[Encoder, Decoder]:
    convs = [_converter(a) for a in args]

    def apply(value: Any, which: int) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(convs):
            raise _expected(f"an array of {len(convs)} items", value)
        out = []
        for i, (item, conv) in enumerate(zip(value, convs, strict=True)):
            try:
                out.append(conv[which](item))
            except _Invalid as exc:
                raise exc.at(f"[{i}]") from None
        return out
    return (lambda v: apply(v, 0)), (lambda v: tuple(apply(v, 1)))


def _tuple(args: tuple[Any, ...]) -> tuple[Encoder, Decoder]:
    if len(args) == 2 and args[1] is Ellipsis:
        return _sequence(args[:1], tuple, (tuple, list), "a tuple")
    if not args:
        return _sequence((), tuple, (tuple, list), "a tuple")
    return _fixed_tuple(args)


def _int_key(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise _Invalid(f"key {value!r:.60} is not an integer") from None
    return _int(value)


_KEYS: dict[Any, tuple[Encoder, Decoder]] = {str: (_str, _str), int: (str, _int_key)}


def _mapping(args: tuple[Any, ...]) -> tuple[Encoder, Decoder]:
    key_type, value_type = args if args else (str, Any)
    if key_type not in _KEYS:
        raise _Unsupported(f"dict keys of type {_type_name(key_type)} (use str or int keys)")
    kenc, kdec = _KEYS[key_type]
    venc, vdec = _converter(value_type)

    def apply(value: Any, kfn: Callable[[Any], Any], vfn: Callable[[Any], Any]) -> Any:
        if not isinstance(value, Mapping):
            raise _expected("an object", value)
        out = {}
        for k, v in value.items():
            key = kfn(k)  # a bad key is reported at the dict itself
            try:
                out[key] = vfn(v)
            except _Invalid as exc:
                raise exc.at(f"[{k!r}]") from None
        return out
    return (lambda v: apply(v, kenc, venc)), (lambda v: apply(v, kdec, vdec))


_CONTAINERS: dict[Any, Callable[[tuple[Any, ...]], tuple[Encoder, Decoder]]] = {
    list: lambda a: _sequence(a, list, (list, tuple), "a list"),
    Sequence: lambda a: _sequence(a, list, (list, tuple), "a list"),
    set: lambda a: _sequence(a, set, (set, frozenset), "a set"),
    frozenset: lambda a: _sequence(a, frozenset, (set, frozenset), "a set"),
    tuple: _tuple, dict: _mapping, Mapping: _mapping,
}


# -- per-class plans --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Plan:
    """What encoding and decoding a class needs, computed once per class."""

    encoders: tuple[tuple[str, Encoder], ...]
    #: ``(name, decoder, required)`` for each field ``__init__`` takes.
    decoders: tuple[tuple[str, Decoder, bool], ...]
    #: Faust's ``__faust`` namespace and whether the codec writes it (Records only).
    namespace: str | None = None
    include_metadata: bool = False


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        try:
            plan = _PLANS[cls] = _build_plan(cls)
        except NameError as exc:
            raise ConfigurationError(
                f"{_type_name(cls)}: cannot resolve the annotation {exc.name!r}; declare "
                "the types a record refers to at module level") from None
    return plan


def _build_plan(cls: type) -> _Plan:
    hints = typing.get_type_hints(cls)  # NameError: a forward reference not defined yet
    encoders, decoders = [], []
    for f in dataclasses.fields(cls):
        try:
            enc, dec = _converter(hints[f.name])
        except _Unsupported as exc:
            raise ConfigurationError(
                f"{_type_name(cls)}.{f.name}: unsupported type {exc}; see docs/models.md "
                "for the supported field types") from None
        encoders.append((f.name, enc))
        if f.init:
            required = f.default is dataclasses.MISSING and \
                f.default_factory is dataclasses.MISSING
            decoders.append((f.name, dec, required))
    namespace, include = None, False
    if issubclass(cls, Record):
        meta = cls.__dict__.get("Meta")
        namespace = getattr(meta, "namespace", None) or f"{cls.__module__}.{cls.__qualname__}"
        metas = [k.__dict__["Meta"] for k in cls.__mro__ if "Meta" in k.__dict__]
        include = next((bool(m.include_metadata) for m in metas
                        if hasattr(m, "include_metadata")), False)
    return _Plan(tuple(encoders), tuple(decoders), namespace, include)


def _encode_obj(obj: Any) -> dict[str, Any]:
    plan = _PLANS.get(type(obj)) or _plan(type(obj))
    out = {}
    for name, encode in plan.encoders:
        try:
            out[name] = encode(getattr(obj, name))
        except _Invalid as exc:
            raise exc.at("." + name) from None
    return out


def _decode_obj(cls: type[T], data: Any) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise _expected("a JSON object", data)
    plan = _PLANS.get(cls) or _plan(cls)
    kwargs = {}
    for name, decode, required in plan.decoders:
        value = data.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise _Invalid("required, but missing").at("." + name)
            continue
        try:
            kwargs[name] = decode(value)
        except _Invalid as exc:
            raise exc.at("." + name) from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ checks
        raise _Invalid(str(exc)) from None


def _copy_mutable_defaults(cls: type) -> None:
    """``tags: list[str] = []`` gives each instance its own list (a dataclass would refuse)."""
    for name, annotation in inspect.get_annotations(cls).items():
        default = cls.__dict__.get(name, _MISSING)
        if default is _MISSING or type(default).__hash__ is not None:
            continue
        if "ClassVar" in str(annotation):
            continue
        kind = type(default)
        factory = kind if not default and kind in (list, dict, set) else \
            functools.partial(copy.deepcopy, default)
        setattr(cls, name, dataclasses.field(default_factory=factory))


# -- Record -----------------------------------------------------------------------------
class FieldDescriptor:
    """``Withdrawal.user`` on a Record class, as in Faust: names the field, so
    ``stream.group_by(Withdrawal.user)`` works. On an instance, the field's value."""

    def __init__(self, owner: type, f: dataclasses.Field[Any]) -> None:
        self.owner = owner
        self.name = f.name
        self._field = f

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is not None:  # only reached for a field not in the instance's __dict__
            raise AttributeError(self.name)
        if owner is not None and "__dataclass_fields__" not in owner.__dict__:
            # a subclass being made a dataclass reads inherited defaults through getattr
            f = self._field
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f
            raise AttributeError(self.name)
        return self

    def getter(self) -> Any:
        """A function of a value that returns this field of it."""
        return operator.attrgetter(self.name)

    def __repr__(self) -> str:
        return f"<field {self.owner.__name__}.{self.name}>"


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
class Record:
    """A typed value: declare fields with annotations, as on a dataclass or ``faust.Record``.

    ``class Click(Record, kw_only=True)`` makes every field keyword-only (so a subclass may
    add required fields after defaulted ones); ``frozen=True`` makes instances immutable
    and hashable. ``class Meta: namespace = "..."`` names the class in Faust's ``__faust``
    key, and ``include_metadata = True`` makes the codec write that key.
    """

    def __init_subclass__(cls, *, kw_only: bool = False, frozen: bool = False,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _copy_mutable_defaults(cls)
        try:
            dataclasses.dataclass(cls, kw_only=kw_only, frozen=frozen)
        except (TypeError, ValueError) as exc:
            hint = (f"; give it a default or declare `class {cls.__name__}(..., kw_only=True)`"
                    if "follows default argument" in str(exc) else "")
            raise ConfigurationError(f"record {_type_name(cls)}: {exc}{hint}") from None
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # a dataclass by now
            setattr(cls, f.name, FieldDescriptor(cls, f))
        with contextlib.suppress(NameError):  # a forward reference: planned on first use
            _PLANS[cls] = _build_plan(cls)

    def to_representation(self, *, faust_compatible: bool | None = None) -> dict[str, Any]:
        """The fields as JSON-ready values: datetimes, decimals and UUIDs as strings, bytes
        as base64, records as dicts. ``faust_compatible`` adds Faust's ``__faust`` key
        (default: the class's ``Meta.include_metadata``)."""
        try:
            out = _encode_obj(self)
        except _Invalid as exc:
            raise _encode_error(type(self), exc) from None
        plan = _PLANS[type(self)]
        if faust_compatible or (faust_compatible is None and plan.include_metadata):
            out["__faust"] = {"ns": plan.namespace}
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """An instance from a JSON object (or a dict of typed values), every field checked.

        Keys the class does not declare, Faust's ``__faust`` among them, are ignored;
        missing fields take their defaults. Raises ``SerializationError`` naming the class,
        the field and what is wrong with it.
        """
        try:
            return _decode_obj(cls, data)
        except _Invalid as exc:
            raise _decode_error(cls, exc) from None


# -- codecs -----------------------------------------------------------------------------
class _TypedJson:
    """JSON of a Record, a dataclass or any supported field type, checked both ways."""

    def __init__(self, tp: Any) -> None:
        self.name = f"json:{_type_name(tp)}"
        self._tp = tp
        self._encode, self._decode = _converter(tp)
        self._record = isinstance(tp, type) and issubclass(tp, Record)
        if self._record or dataclasses.is_dataclass(tp):
            _plan(tp)  # unresolvable annotations fail here, when the topic is declared

    def dumps(self, obj: Any) -> bytes:
        try:
            value = self._encode(obj)
        except _Invalid as exc:
            raise _encode_error(self._tp, exc) from None
        if self._record and _PLANS[type(obj)].include_metadata:
            value["__faust"] = {"ns": _PLANS[type(obj)].namespace}
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:  # in an Any field: a type JSON has no form for
            raise SerializationError(f"cannot encode {_type_name(self._tp)}: {exc}") from None

    def loads(self, data: bytes) -> Any:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(
                f"invalid {_type_name(self._tp)}: not JSON ({exc}): {data[:60]!r}") from None
        try:
            return self._decode(value)
        except _Invalid as exc:
            raise _decode_error(self._tp, exc) from None


class _Pydantic:
    """A pydantic v2 model, through its own JSON methods (pydantic is never imported here:
    the model's module did that)."""

    def __init__(self, tp: Any) -> None:
        if not hasattr(tp, "model_validate_json"):
            raise ConfigurationError(f"{_type_name(tp)}: pydantic v1 models are not supported")
        self.name = f"json:{_type_name(tp)}"
        self._tp = tp

    def dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, self._tp):
            raise SerializationError(f"cannot encode {_type_name(self._tp)}: expected a "
                                     f"{_type_name(self._tp)}, got {type(obj).__name__}")
        try:
            return obj.model_dump_json().encode()  # type: ignore[no-any-return]
        except ValueError as exc:  # pydantic_core.PydanticSerializationError
            raise SerializationError(f"cannot encode {_type_name(self._tp)}: {exc}") from None

    def loads(self, data: bytes) -> Any:
        try:
            return self._tp.model_validate_json(data)
        except ValueError as exc:  # pydantic.ValidationError, invalid JSON included
            errors: list[dict[str, Any]] = \
                exc.errors() if hasattr(exc, "errors") else [{"loc": (), "msg": str(exc)}]
            what = "; ".join((f"field '{'.'.join(map(str, e['loc']))}': " if e["loc"] else "")
                             + str(e["msg"]) for e in errors)
            raise SerializationError(f"invalid {_type_name(self._tp)}: {what}") from None


class _Text:
    """``str`` as UTF-8, ``int`` and ``float`` as decimal text, ``bytes`` as they are."""

    def __init__(self, tp: type, name: str) -> None:
        self.name, self._tp = name, tp

    def dumps(self, obj: Any) -> bytes:
        tp = self._tp
        if tp is bytes and isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        if isinstance(obj, tp) and not (tp is int and isinstance(obj, bool)):
            return obj.encode() if isinstance(obj, str) else repr(obj).encode()
        if tp is float and isinstance(obj, int) and not isinstance(obj, bool):
            return repr(float(obj)).encode()
        raise SerializationError(f"cannot encode {tp.__name__}: expected a {tp.__name__}, "
                                 f"got {type(obj).__name__}")

    def loads(self, data: bytes) -> Any:
        try:
            if self._tp is bytes:
                return bytes(data)
            return data.decode() if self._tp is str else self._tp(data)
        except ValueError:  # UnicodeDecodeError is a ValueError
            raise SerializationError(
                f"invalid {self._tp.__name__}: {bytes(data[:60])!r}") from None


_TEXT: dict[type, Codec] = {str: _Text(str, "str"), bytes: _Text(bytes, "raw"),
                            int: _Text(int, "int"), float: _Text(float, "float")}


def codec_for_type(tp: type) -> Codec:
    """The codec for values of type ``tp``.

    A Record subclass, a dataclass, or another supported field type (``datetime``,
    ``list[Click]``...) is JSON, checked when encoded and when decoded; a pydantic v2
    model is JSON through pydantic; ``str`` is UTF-8, ``int`` and ``float`` decimal text,
    and ``bytes`` the bytes themselves. Raises ``ConfigurationError`` for other types.
    """
    if tp in _TEXT:
        return _TEXT[tp]
    if tp is Record:
        raise ConfigurationError("codec_for_type(Record): pass a subclass that has fields")
    if _is_pydantic(tp):
        return _Pydantic(tp)
    try:
        return _TypedJson(tp)
    except _Unsupported as exc:
        raise ConfigurationError(
            f"no codec for type {exc}: use a Record or dataclass, str, bytes, int, float, "
            "or a supported field type; for untyped JSON use value_serializer='json'") from None


def _is_pydantic(tp: Any) -> bool:
    """Whether ``tp`` is a pydantic model, without importing pydantic (a model's module
    imported it already)."""
    pydantic = sys.modules.get("pydantic")
    return (pydantic is not None and isinstance(tp, type)
            and not isinstance(tp, types.GenericAlias) and issubclass(tp, pydantic.BaseModel))
