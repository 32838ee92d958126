"""Typed records and their codecs (issue 12, item 3): what goes on the wire, what comes back,
and what a bad record's error says (it becomes the dead letter's ``eoflow.error`` header)."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest

import eoflow
from eoflow._models import Record, codec_for_type
from eoflow.errors import ConfigurationError, SerializationError
from eoflow.testing import TestDriver

AT = datetime(2024, 5, 1, 12, 30, 0, 250000, tzinfo=UTC)
ID = UUID("12345678-1234-5678-1234-567812345678")


class Referrer(Record):
    url: str
    hops: int = 0


class Click(Record):
    user: str
    page: str
    at: datetime
    amount: Decimal = Decimal("0")
    tags: list[str] = []
    referrer: Referrer | None = None


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Everything(Record):
    text: str
    count: int
    ratio: float
    flag: bool
    blob: bytes
    at: datetime
    naive: datetime
    day: date
    clock: time
    money: Decimal
    id: UUID
    color: Color
    anything: Any
    numbers: list[int]
    scores: dict[str, float]
    by_id: dict[int, str]
    labels: set[str]
    frozen: frozenset[int]
    series: tuple[int, ...]
    pair: tuple[str, int]
    maybe: int | None


EVERYTHING = Everything(
    text="héllo", count=-3, ratio=0.5, flag=True, blob=b"\x00\xffhi", at=AT,
    naive=datetime(2024, 5, 1, 8, 0), day=date(2024, 2, 29), clock=time(23, 59, 1),
    money=Decimal("19.99"), id=ID,
    color=Color.BLUE, anything={"free": [1, "form"]}, numbers=[1, 2, 3],
    scores={"a": 1.5}, by_id={7: "seven"}, labels={"b", "a", "c"}, frozen=frozenset({2, 1}),
    series=(4, 5), pair=("x", 1), maybe=None)


def roundtrip(value: Any, tp: Any = None) -> Any:
    codec = codec_for_type(tp or type(value))
    return codec.loads(codec.dumps(value))


# -- round trips and JSON forms ---------------------------------------------------------
def test_every_supported_field_type_round_trips() -> None:
    assert roundtrip(EVERYTHING) == EVERYTHING


def test_each_type_has_a_plain_json_form() -> None:
    assert orjson.loads(codec_for_type(Everything).dumps(EVERYTHING)) == {
        "text": "héllo", "count": -3, "ratio": 0.5, "flag": True,
        "blob": "AP9oaQ==",                                 # base64
        "at": "2024-05-01T12:30:00.250000+00:00",           # ISO 8601, offset kept
        "naive": "2024-05-01T08:00:00",                     # no offset invented
        "day": "2024-02-29", "clock": "23:59:01",
        "money": "19.99",                                   # decimals as strings: exact
        "id": "12345678-1234-5678-1234-567812345678", "color": "blue",
        "anything": {"free": [1, "form"]}, "numbers": [1, 2, 3], "scores": {"a": 1.5},
        "by_id": {"7": "seven"},                            # JSON keys are strings
        "labels": ["a", "b", "c"], "frozen": [1, 2],        # sets sorted: same set, same bytes
        "series": [4, 5], "pair": ["x", 1], "maybe": None}


def test_datetimes_keep_their_offset_or_its_absence() -> None:
    plus_two = datetime(2024, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    for at in (plus_two, datetime(2024, 1, 1, 9, 0)):
        back = roundtrip(Click(user="u", page="/", at=at)).at
        assert back == at and back.utcoffset() == at.utcoffset()


def test_json_from_other_producers_is_accepted() -> None:
    """Zulu time, a date-only datetime, numbers for decimals and floats, ints for floats."""
    e = Click.from_data({"user": "u", "page": "/", "at": "2024-05-01T12:30:00.25Z",
                         "amount": 2.5})
    assert e.at == AT and e.amount == Decimal("2.5")
    assert Click.from_data({"user": "u", "page": "/", "at": "2024-05-01"}).at == \
        datetime(2024, 5, 1)
    assert Everything.from_data({**EVERYTHING.to_representation(), "ratio": 2}).ratio == 2.0


def test_from_data_takes_typed_python_values_too() -> None:
    assert Click.from_data({"user": "u", "page": "/", "at": AT}).at is AT


def test_nested_and_optional_fields() -> None:
    with_ref = Click(user="u", page="/", at=AT, referrer=Referrer(url="https://a.example"))
    assert roundtrip(with_ref) == with_ref
    assert with_ref.to_representation()["referrer"] == {"url": "https://a.example", "hops": 0}
    assert roundtrip(Click(user="u", page="/", at=AT)).referrer is None

    class Session(Record):
        clicks: list[Click]
        by_page: dict[str, Click | None]

    session = Session(clicks=[with_ref], by_page={"/": with_ref, "/x": None})
    assert roundtrip(session) == session


def test_a_record_may_contain_itself() -> None:
    tree = Tree(name="root", children=[Tree(name="leaf")])
    assert roundtrip(tree) == tree


class Tree(Record):
    name: str
    children: list[Tree] = []


def test_codecs_for_other_supported_types_are_json_of_that_type() -> None:
    clicks = [Click(user="u", page="/", at=AT)]
    assert roundtrip(clicks, list[Click]) == clicks
    assert codec_for_type(datetime).dumps(AT) == b'"2024-05-01T12:30:00.250000+00:00"'
    assert roundtrip(Color.RED) is Color.RED


# -- the class itself -------------------------------------------------------------------
def test_construction_equality_and_repr_are_a_dataclass_s() -> None:
    click = Click("u", "/", AT, Decimal("1"))
    assert click == Click(user="u", page="/", at=AT, amount=Decimal("1"))
    assert click != Click(user="v", page="/", at=AT, amount=Decimal("1"))
    assert repr(Referrer(url="x")) == "Referrer(url='x', hops=0)"
    assert dataclasses.replace(click, user="v").user == "v"


def test_mutable_defaults_are_not_shared() -> None:
    first, second = Click(user="u", page="/", at=AT), Click(user="v", page="/", at=AT)
    first.tags.append("mine")
    assert second.tags == [] and Click.from_data({"user": "w", "page": "/", "at": AT}).tags == []

    class Prefilled(Record):
        tags: list[str] = ["a"]
        counts: dict[str, list[int]] = {"x": [1]}
        referrer: Referrer = Referrer(url="default")

    one, two = Prefilled(), Prefilled()
    one.tags.append("b")
    one.counts["x"].append(2)
    one.referrer.hops = 5
    assert two == Prefilled(tags=["a"], counts={"x": [1]}, referrer=Referrer(url="default"))


def test_a_subclass_adds_fields() -> None:
    class PaidClick(Click):
        order: UUID | None = None

    paid = PaidClick("u", "/", AT, Decimal("3"), ["t"], None, ID)
    assert paid.order == ID and list(paid.to_representation())[-2:] == ["referrer", "order"]
    assert roundtrip(paid) == paid


def test_a_required_field_after_defaulted_ones_needs_kw_only() -> None:
    with pytest.raises(ConfigurationError, match=r"Late.*kw_only=True"):
        class Late(Click):
            session: str  # type: ignore[misc]

    class Keyword(Click, kw_only=True):
        session: str

    assert roundtrip(Keyword(user="u", page="/", at=AT, session="s")).session == "s"


def test_frozen_records_are_hashable() -> None:
    class Key(Record, frozen=True):
        user: str
        day: date

    assert {Key(user="u", day=date(2024, 1, 1)): 1}[Key(user="u", day=date(2024, 1, 1))] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        Key(user="u", day=date(2024, 1, 1)).user = "v"  # type: ignore[misc]


def test_unsupported_field_types_are_refused_when_declared() -> None:
    with pytest.raises(ConfigurationError, match=r"Odd\.z: unsupported type complex"):
        class Odd(Record):
            z: complex
    with pytest.raises(ConfigurationError, match=r"Either\.v: .*union"):
        class Either(Record):
            v: int | str
    with pytest.raises(ConfigurationError, match=r"Keys\.m: .*dict keys"):
        class Keys(Record):
            m: dict[float, int]


def test_a_type_that_cannot_be_resolved_is_refused_with_advice() -> None:
    class Inner(Record):
        x: int

    class Outer(Record):
        inner: Inner  # a string annotation naming a class local to this function

    with pytest.raises(ConfigurationError, match=r"Outer: cannot resolve .*'Inner'.*module"):
        codec_for_type(Outer)


# -- validation errors ------------------------------------------------------------------
VALID: dict[str, Any] = {"user": "u", "page": "/", "at": "2024-05-01T12:30:00+00:00"}


@pytest.mark.parametrize(("change", "message"), [
    ({"page": None}, "invalid Click: field 'page': null, but the type is not optional"),
    ({"user": 5}, "invalid Click: field 'user': expected a string, got int 5"),
    ({"at": "2024-13-01"}, "invalid Click: field 'at': not an ISO 8601 datetime: '2024-13-01'"),
    ({"at": 1714566600}, "invalid Click: field 'at': expected an ISO 8601 datetime string"),
    ({"amount": "12,5"}, "invalid Click: field 'amount': not a decimal number: '12,5'"),
    ({"tags": ["a", 3]}, "invalid Click: field 'tags[1]': expected a string, got int 3"),
    ({"tags": "a"}, "invalid Click: field 'tags': expected a JSON array (a list), got str"),
    ({"referrer": {"hops": 1}}, "invalid Click: field 'referrer.url': required, but missing"),
    ({"referrer": {"url": "x", "hops": True}},
     "invalid Click: field 'referrer.hops': expected an integer, got bool True"),
])
def test_an_invalid_field_is_named_with_what_is_wrong(change: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(SerializationError) as info:
        Click.from_data({**VALID, **change})
    assert str(info.value).startswith(message)


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(SerializationError, match="invalid Click: field 'page': required, but"):
        Click.from_data({"user": "u", "at": "2024-05-01"})


@pytest.mark.parametrize(("change", "message"), [
    ({"blob": "not base64!"}, "field 'blob': not base64"),
    ({"id": "nope"}, "field 'id': not a UUID: 'nope'"),
    ({"day": "2024-02-30"}, "field 'day': not an ISO 8601 date"),
    ({"color": "green"}, "field 'color': 'green' is not one of 'red', 'blue'"),
    ({"by_id": {"x": "?"}}, "field 'by_id': key 'x' is not an integer"),
    ({"scores": {"a": "high"}}, "field 'scores['a']': expected a number, got str 'high'"),
    ({"pair": ["x"]}, "field 'pair': expected an array of 2 items"),
    ({"count": 1.5}, "field 'count': expected an integer, got float 1.5"),
])
def test_invalid_values_of_other_types_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SerializationError, match="invalid Everything: ") as info:
        Everything.from_data({**EVERYTHING.to_representation(), **change})
    assert message in str(info.value)


def test_unknown_keys_are_ignored_so_producers_may_add_fields() -> None:
    assert Click.from_data({**VALID, "added_later": 1}) == Click.from_data(VALID)


def test_post_init_checks_become_serialization_errors() -> None:
    @dataclasses.dataclass
    class Positive:
        n: int

        def __post_init__(self) -> None:
            if self.n <= 0:
                raise ValueError(f"n must be positive, got {self.n}")

    with pytest.raises(SerializationError, match="invalid Positive: n must be positive, got 0"):
        codec_for_type(Positive).loads(b'{"n": 0}')


# -- Faust interop ----------------------------------------------------------------------
FAUST_JSON = (b'{"user": "a", "page": "/", "at": "2024-05-01T12:30:00.250000+00:00", '
              b'"amount": "19.99", "tags": [], "referrer": {"url": "https://a.example", '
              b'"hops": 0, "__faust": {"ns": "myapp.models.Referrer"}}, '
              b'"__faust": {"ns": "myapp.models.Click"}}')


def test_json_a_faust_app_wrote_is_read() -> None:
    """faust-streaming 0.11's Record JSON: every record object carries ``__faust``."""
    assert codec_for_type(Click).loads(FAUST_JSON) == Click(
        user="a", page="/", at=AT, amount=Decimal("19.99"),
        referrer=Referrer(url="https://a.example"))


def test_faust_s_forms_of_utc_dates_and_bytes_are_read() -> None:
    """Faust's JSON encoder writes UTC as ``Z``, a date as a datetime at midnight and bytes
    as their Python repr."""
    faust = Everything.from_data({**EVERYTHING.to_representation(),
                                  "at": "2024-05-01T12:30:00.250000Z",
                                  "day": "2024-02-29T00:00:00", "blob": "b'\\x00\\xffhi'"})
    assert faust == EVERYTHING


def test_the_faust_namespace_is_written_on_request() -> None:
    click = Click(user="a", page="/", at=AT)
    assert "__faust" not in click.to_representation()
    assert click.to_representation(faust_compatible=True)["__faust"] == {
        "ns": f"{__name__}.Click"}

    class Named(Record):
        x: int

        class Meta:
            namespace = "myapp.models.Named"
            include_metadata = True

    codec = codec_for_type(Named)
    assert orjson.loads(codec.dumps(Named(x=1))) == {"x": 1,
                                                     "__faust": {"ns": "myapp.models.Named"}}
    assert codec.loads(codec.dumps(Named(x=1))) == Named(x=1)


# -- dataclasses, pydantic, plain types -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str = "p"
    seen: list[datetime] = dataclasses.field(default_factory=list)


class Shape(Record):
    points: list[Point]


def test_dataclasses_are_encoded_by_their_annotations() -> None:
    point = Point(1.0, 2.5, seen=[AT])
    assert orjson.loads(codec_for_type(Point).dumps(point)) == {
        "x": 1.0, "y": 2.5, "label": "p", "seen": ["2024-05-01T12:30:00.250000+00:00"]}
    assert roundtrip(point) == point
    assert roundtrip(Shape(points=[point])) == Shape(points=[point])
    with pytest.raises(SerializationError, match="invalid Point: field 'y': required"):
        codec_for_type(Point).loads(b'{"x": 1}')


def test_pydantic_models_go_through_pydantic() -> None:
    pydantic = pytest.importorskip("pydantic")

    class User(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        name: str
        age: int

    codec = codec_for_type(User)
    assert codec.loads(codec.dumps(User(name="a", age=3))) == User(name="a", age=3)
    with pytest.raises(SerializationError, match="invalid User: field 'age': Input should be"):
        codec.loads(b'{"name": "a", "age": "old"}')
    with pytest.raises(SerializationError, match="invalid User: Invalid JSON"):
        codec.loads(b"{")
    with pytest.raises(SerializationError, match="expected a User, got dict"):
        codec.dumps({"name": "a", "age": 3})


@pytest.mark.parametrize(("tp", "value", "wire"), [
    (str, "héllo", "héllo".encode()), (bytes, b"\x00\x01", b"\x00\x01"),
    (int, -42, b"-42"), (float, 0.1, b"0.1")])
def test_plain_types_have_plain_codecs(tp: type, value: Any, wire: bytes) -> None:
    codec = codec_for_type(tp)
    assert codec.dumps(value) == wire and codec.loads(wire) == value


def test_plain_codecs_refuse_what_they_cannot_read() -> None:
    with pytest.raises(SerializationError, match="invalid int: b'4x'"):
        codec_for_type(int).loads(b"4x")
    with pytest.raises(SerializationError, match="invalid str"):
        codec_for_type(str).loads(b"\xff")
    with pytest.raises(SerializationError, match="expected a int, got bool"):
        codec_for_type(int).dumps(True)


def test_types_without_a_codec_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no codec for type complex"):
        codec_for_type(complex)
    with pytest.raises(ConfigurationError, match="subclass"):
        codec_for_type(Record)


# -- the codec at the boundary ----------------------------------------------------------
def test_garbage_bytes_are_a_serialization_error_naming_the_type() -> None:
    for garbage in (b"\x00\x01garbage", b"[1, 2]", b'"just a string"'):
        with pytest.raises(SerializationError, match="invalid Click"):
            codec_for_type(Click).loads(garbage)


def test_encoding_the_wrong_type_names_expected_and_actual() -> None:
    codec = codec_for_type(Click)
    with pytest.raises(SerializationError, match="cannot encode Click: expected a Click, got dict"):
        codec.dumps({"user": "u", "page": "/"})
    with pytest.raises(SerializationError, match="field 'user': expected a string, got int 5"):
        codec.dumps(Click(user=5, page="/", at=AT))  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="cannot encode Everything: Type is not JSON"):
        codec_for_type(Everything).dumps(dataclasses.replace(EVERYTHING, anything=Decimal(1)))


async def test_an_agent_reads_records_and_a_bad_one_is_dead_lettered() -> None:
    app = eoflow.App("models")
    clicks = app.topic("clicks", partitions=1, value_serializer=codec_for_type(Click))
    spent = app.topic("spent", partitions=1, value_serializer=codec_for_type(Decimal))

    @app.agent(clicks)
    async def total(stream: eoflow.Stream[Any, Click]) -> None:
        async for click in stream:
            await spent.send(value=click.amount * 2)

    async with TestDriver(app) as driver:
        await driver.send("clicks", Click(user="u", page="/", at=AT, amount=Decimal("1.10")))
        driver.broker.append(None, 0, "clicks", 0, [(None, b'{"user": "u"}', None, ())])
        driver.broker.append(None, 0, "clicks", 0, [(None, FAUST_JSON, None, ())])
        await driver.settle()
        assert driver.values("spent") == [Decimal("2.20"), Decimal("39.98")]
        [dead] = driver.dead_letters()
        error = dict(dead.headers)["eoflow.error"]
        assert b"json:Click: invalid Click: field 'page': required, but missing" in error
