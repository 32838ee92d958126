"""The stream surface a Faust user reaches for, on the broker-less driver (issue 12).

Operators (filter, take, enumerate, group_by, through), yielding agents with sinks, agents
without a source topic, and the shapes refused at declaration; each crash-tested where a
transaction is involved.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

import eoflow
from eoflow.errors import ConfigurationError
from eoflow.testing import TestDriver


def app_with(name: str) -> eoflow.App:
    return eoflow.App(name)


async def test_filter_skips_events_and_they_still_commit() -> None:
    app = app_with("f")
    src, out = app.topic("in", partitions=2), app.topic("out", partitions=2)

    @app.agent(src)
    async def evens(stream: eoflow.Stream[Any, int]) -> None:
        async for n in stream.filter(lambda n: n % 2 == 0):
            await out.send(value=n)

    async with TestDriver(app) as driver:
        for n in range(10):
            await driver.send("in", n, partition=n % 2)
        await driver.settle()
        assert sorted(driver.values("out")) == [0, 2, 4, 6, 8]


async def test_take_batches_commit_whole_even_across_a_crash() -> None:
    app = app_with("t")
    src, out = app.topic("in", partitions=1), app.topic("sums", partitions=1)

    @app.agent(src)
    async def sums(stream: eoflow.Stream[Any, int]) -> None:
        async for batch in stream.take(4, within=0.05):
            await out.send(value={"n": len(batch), "sum": sum(batch)})

    async with TestDriver(app) as driver:
        for n in range(1, 11):
            await driver.send("in", n)
        await driver.settle()
        await driver.send("in", 100)
        await driver.crash(at="before_commit")
        await driver.settle()
        batches = driver.values("sums")
        assert sum(b["sum"] for b in batches) == sum(range(1, 11)) + 100
        assert all(1 <= b["n"] <= 4 for b in batches)


async def test_enumerate_counts_events() -> None:
    app = app_with("e")
    src, out = app.topic("in", partitions=1), app.topic("out", partitions=1)

    @app.agent(src)
    async def number(stream: eoflow.Stream[Any, str]) -> None:
        async for i, word in stream.enumerate(start=1):
            await out.send(value=[i, word])

    async with TestDriver(app) as driver:
        for word in "abc":
            await driver.send("in", word)
        await driver.settle()
        assert driver.values("out") == [[1, "a"], [2, "b"], [3, "c"]]


async def test_wordcount_groups_words_through_a_repartition_topic_exactly_once() -> None:
    from apps import wordcount

    lines = ["The fox", "the dog and THE fox", "a fox"]
    async with TestDriver(wordcount.app) as driver:
        await driver.send("lines", lines[0])
        await driver.send("lines", lines[1])
        await driver.settle()
        await driver.send("lines", lines[2])
        await driver.crash(at="before_offsets")
        await driver.settle()
        expected = collections.Counter(w for line in lines for w in line.lower().split())
        assert driver.table("counts") == dict(expected)
        repartition = driver.outputs("wordcount-count-word-repartition")
        assert sorted(o.key for o in repartition) == sorted(expected.elements())
        # each word lives in one partition of the repartition topic: co-partitioned counts
        partitions = collections.defaultdict(set)
        for o in repartition:
            partitions[o.key].add(o.partition)
        assert all(len(ps) == 1 for ps in partitions.values())


async def test_group_by_a_field_with_filters_before_and_after_the_hop() -> None:
    app = app_with("g")
    orders = app.topic("orders", partitions=3)
    totals = app.Table("totals", default=int, partitions=3)

    @app.agent(orders)
    async def by_customer(stream: eoflow.Stream[Any, dict[str, Any]]) -> None:
        paid = stream.filter(lambda o: o["paid"])
        async for order in paid.group_by("customer").filter(lambda o: o["amount"] > 0):
            totals[order["customer"]] += order["amount"]

    async with TestDriver(app) as driver:
        for i, (customer, amount, paid) in enumerate([("ann", 5, True), ("bob", 7, False),
                                                      ("ann", 3, True), ("bob", 2, True),
                                                      ("cid", 0, True)]):
            await driver.send("orders", {"customer": customer, "amount": amount,
                                         "paid": paid}, partition=i % 3)
        await driver.settle()
        assert driver.table("totals") == {"ann": 8, "bob": 2}
        assert len(driver.outputs("g-by_customer-customer-repartition")) == 4  # paid ones


async def test_through_a_named_topic() -> None:
    app = app_with("th")
    src = app.topic("raw", partitions=1)
    clean = app.topic("clean", partitions=2)
    out = app.topic("out", partitions=1)

    @app.agent(src)
    async def relay(stream: eoflow.Stream[Any, str]) -> None:
        async for value in stream.filter(bool).through(clean):
            await out.send(value=value.upper())

    async with TestDriver(app) as driver:
        for value in ["a", "", "b"]:
            await driver.send("raw", value, key=value or "empty")
        await driver.settle()
        assert sorted(driver.values("clean")) == ["a", "b"]
        assert sorted(driver.values("out")) == ["A", "B"]


async def test_a_yielding_agent_feeds_every_sink_inside_the_transaction() -> None:
    app = app_with("y")
    src = app.topic("in", partitions=1)
    doubled = app.topic("doubled", partitions=1)
    seen: list[int] = []

    @app.agent(name="audit")
    async def audit(stream: eoflow.Stream[Any, int]) -> None:
        async for n in stream:
            seen.append(n)

    @app.agent(src, sink=[doubled, audit, seen.append])
    async def double(stream: eoflow.Stream[Any, int]) -> Any:
        async for n in stream:
            yield n * 2

    async with TestDriver(app) as driver:
        for n in (1, 2, 3):
            await driver.send("in", n)
        await driver.settle()
        assert driver.values("doubled") == [2, 4, 6]
        assert sorted(driver.values("y-audit")) == [2, 4, 6]  # the agent's own topic
        assert sorted(seen) == [2, 2, 4, 4, 6, 6]  # the callable and the audit agent


async def test_an_agent_without_a_topic_is_fed_with_send_and_cast() -> None:
    app = app_with("own")
    out = app.topic("out", partitions=1)

    @app.agent(name="greet")
    async def greet(stream: eoflow.Stream[Any, str]) -> None:
        async for name in stream:
            await out.send(value=f"hello {name}")

    @app.agent(app.topic("names", partitions=1))
    async def relay(stream: eoflow.Stream[Any, str]) -> None:
        async for name in stream:
            await greet.send(value=name)
            await greet.cast(name.upper())

    async with TestDriver(app) as driver:
        await driver.send("names", "ann")
        await driver.settle()
        assert sorted(driver.values("out")) == ["hello ANN", "hello ann"]


def test_shapes_the_worker_cannot_run_are_refused_at_declaration() -> None:
    app = app_with("bad")
    src = app.topic("in")
    with pytest.raises(ConfigurationError, match="async def"):
        app.agent(src)(lambda stream: None)

    with pytest.raises(ConfigurationError, match="exactly one argument"):
        @app.agent(src)
        async def two(stream: Any, other: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="never yields"):
        @app.agent(src, sink=[src])
        async def quiet(stream: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="needs name="):
        from eoflow._stream import Stream, probe

        _, stream = probe("x")
        stream.group_by(lambda v: v)
    assert isinstance(Stream, type)


async def test_a_group_by_key_that_raises_dead_letters_the_record() -> None:
    app = app_with("k")
    src = app.topic("in", partitions=1)
    totals = app.Table("totals", default=int, partitions=1)

    @app.agent(src)
    async def count(stream: eoflow.Stream[Any, dict[str, Any]]) -> None:
        async for value in stream.group_by(lambda v: v["who"], name="who"):
            totals[value["who"]] += 1

    async with TestDriver(app, max_retries=2) as driver:
        await driver.send("in", {"who": "ann"})
        await driver.send("in", {"nobody": True})
        await driver.send("in", {"who": "ann"})
        await driver.settle()
        assert driver.table("totals") == {"ann": 2}
        [dead] = driver.dead_letters()
        headers = dict(dead.headers)
        assert headers["eoflow.agent"].endswith(b"count.who")  # the group_by's forwarder
        assert headers["eoflow.offset"] == b"1" and b"KeyError" in headers["eoflow.error"]


async def test_an_agent_that_builds_another_stream_after_a_restart_is_stopped() -> None:
    app = app_with("nd")
    src = app.topic("in", partitions=1)
    runs: list[int] = []

    @app.agent(src)
    async def moody(stream: eoflow.Stream[Any, Any]) -> None:
        runs.append(1)
        grouped = stream.group_by(lambda v: v, name="a" if len(runs) < 2 else "b")
        async for _ in grouped:
            pass

    with pytest.raises(ConfigurationError, match="the same stream every time"):
        async with TestDriver(app) as driver:
            await driver.send("in", 1)
            await driver.settle()


async def test_a_global_table_is_read_whole_by_every_agent_and_written_exactly_once() -> None:
    app = app_with("gt")
    prices = app.topic("prices", partitions=3, key_serializer="str")
    orders = app.topic("orders", partitions=2)
    out = app.topic("out", partitions=1)
    catalog = app.GlobalTable("catalog", partitions=3)

    @app.agent(prices)
    async def set_price(stream: eoflow.Stream[str, Any]) -> None:
        async for sku, price in stream.items():
            catalog[sku] = price
            assert catalog[sku] == price  # read-your-writes within the interval

    @app.agent(orders)
    async def price_order(stream: eoflow.Stream[Any, dict[str, Any]]) -> None:
        async for order in stream:  # another topic, another partition count: reads only
            await out.send(value={"sku": order["sku"], "price": catalog.get(order["sku"])})

    async with TestDriver(app) as driver:
        for sku, price in [("apple", 1), ("pear", 2), ("plum", 3)]:
            await driver.send("prices", price, key=sku)
        await driver.settle()
        await driver.crash()  # the restart restores the view from the changelog
        assert driver.worker is not None and driver.worker._tables is not None
        view = driver.worker._tables.views["catalog"]
        assert dict(view.items()) == {b'"apple"': b"1", b'"pear"': b"2", b'"plum"': b"3"}
        await driver.send("orders", {"sku": "pear"})
        await driver.send("orders", {"sku": "kiwi"})
        await driver.settle()
        assert sorted(driver.values("out"), key=str) == sorted(
            [{"sku": "pear", "price": 2}, {"sku": "kiwi", "price": None}], key=str)
        assert sorted(dict(catalog.items())) == ["apple", "pear", "plum"]


async def test_a_set_table_keeps_sets_per_key() -> None:
    app = app_with("st")
    tags = app.topic("tags", partitions=1, key_serializer="str")
    seen = app.SetTable("seen", partitions=1)

    @app.agent(tags)
    async def collect(stream: eoflow.Stream[str, Any]) -> None:
        async for user, change in stream.items():
            if change["op"] == "add":
                seen[user].add(change["tag"])
            elif change["op"] == "many":
                seen[user] |= set(change["tags"])
            else:
                seen[user].discard(change["tag"])

    async with TestDriver(app) as driver:
        for change in [{"op": "add", "tag": "vip"}, {"op": "many", "tags": ["a", "b"]},
                       {"op": "drop", "tag": "a"}]:
            await driver.send("tags", change, key="ann")
        await driver.send("tags", {"op": "add", "tag": "x"}, key="bob")
        await driver.send("tags", {"op": "drop", "tag": "x"}, key="bob")
        await driver.settle()
        assert {k: set(v) for k, v in driver.table("seen").items()} == {"ann": {"vip", "b"}}


class Withdrawal(eoflow.Record):
    user: str
    amount: float
    country: str = "NO"


class Balance(eoflow.Record):
    total: float = 0.0
    count: int = 0


async def test_typed_records_flow_through_group_by_into_a_table_of_records() -> None:
    app = app_with("bank")
    withdrawals = app.topic("withdrawals", partitions=2, value_type=Withdrawal)
    balances = app.Table("balances", partitions=2, key_type=str, value_type=Balance,
                         default=Balance)

    @app.agent(withdrawals)
    async def account(stream: eoflow.Stream[Any, Withdrawal]) -> None:
        async for w in stream.group_by("user", name="user"):
            b = balances[w.user]
            balances[w.user] = Balance(total=b.total + w.amount, count=b.count + 1)

    async with TestDriver(app) as driver:
        for i, (user, amount) in enumerate([("ann", 10.0), ("bob", 5.0), ("ann", 2.5)]):
            await driver.send("withdrawals", Withdrawal(user=user, amount=amount),
                              partition=i % 2)
        driver.broker.append(None, 0, "withdrawals", 0,
                             [(None, b'{"user": "cid"}', None, ())])  # no amount: invalid
        await driver.settle()
        assert driver.table("balances") == {"ann": Balance(12.5, 2), "bob": Balance(5.0, 1)}
        [dead] = driver.dead_letters()
        assert b"field 'amount'" in dict(dead.headers)["eoflow.error"]


async def test_group_by_a_record_field_as_in_faust_even_one_with_a_default() -> None:
    # Withdrawal.country used to be its default "NO": the app grouped by a field named
    # "NO", created bank-track-NO-repartition and dead-lettered every record.
    app = eoflow.App("bank")
    withdrawals = app.topic("withdrawals", partitions=2, value_type=Withdrawal)
    by_country = app.Table("by-country", default=float, partitions=2)

    @app.agent(withdrawals, name="track")
    async def track(stream: eoflow.Stream[Any, Withdrawal]) -> None:
        async for w in stream.group_by(Withdrawal.country):
            by_country[w.country] += w.amount

    async with TestDriver(app) as driver:
        for w in (Withdrawal("ann", 10.0), Withdrawal("bob", 5.0, "SE"),
                  Withdrawal("cid", 1.5)):
            await driver.send("withdrawals", w, key=w.user)
        await driver.settle()
        assert driver.table("by-country") == {"NO": 11.5, "SE": 5.0}
        assert not driver.dead_letters()
        assert "bank-track-country-repartition" in driver.broker.logs


async def test_a_pattern_topic_reads_every_existing_topic_it_matches() -> None:
    app = eoflow.App("regions")
    orders = app.topic(pattern=r"orders-(eu|us)", key_serializer="str")
    totals = app.Table("totals", default=int, partitions=2)

    @app.agent(orders)
    async def total(stream: eoflow.Stream[str, Any]) -> None:
        async for event in stream.events():
            totals[f"{event.topic}:{event.key}"] += event.value

    driver = TestDriver(app)
    for name in ("orders-eu", "orders-us", "orders-asia"):
        driver.broker.create_topic(name, 2, {})
    async with driver:
        assert orders.names == ("orders-eu", "orders-us")
        for topic in ("orders-eu", "orders-us"):
            await driver.send(topic, 5, key="ann")
        await driver.send("orders-asia", b"5", key=b"ann")  # not matched: not read
        await driver.settle()
        assert driver.table("totals") == {"orders-eu:ann": 5, "orders-us:ann": 5}


async def test_a_pattern_that_matches_nothing_is_refused_at_start() -> None:
    app = eoflow.App("nothing")

    @app.agent(app.topic(pattern="missing-.*"))
    async def idle(stream: eoflow.Stream[Any, Any]) -> None:
        async for _ in stream:
            pass

    with pytest.raises(ConfigurationError, match=r"pattern 'missing-\.\*' matches no topic"):
        async with TestDriver(app):
            pass


def test_a_pattern_topic_cannot_be_sent_to_and_a_bad_pattern_is_named() -> None:
    app = eoflow.App("p")
    with pytest.raises(ConfigurationError, match="topic pattern '\\(': missing"):
        app.topic(pattern="(")
    with pytest.raises(ConfigurationError, match="names or a pattern"):
        app.topic("a", pattern="b")


async def test_a_yielded_value_its_sink_cannot_encode_is_dead_lettered_naming_the_sink() -> None:
    app = eoflow.App("unencodable")
    src = app.topic("in", partitions=1)
    out = app.topic("out", partitions=1)

    @app.agent(src, sink=[out])
    async def agent(stream: eoflow.Stream[Any, Any]) -> Any:
        async for value in stream:
            yield {1, 2} if value == "bad" else value

    async with TestDriver(app) as driver:
        for value in ("ok1", "bad", "ok2"):
            await driver.send("in", value)
        await driver.settle()
        assert driver.values("out") == ["ok1", "ok2"]
        [letter] = driver.dead_letters()
        headers = dict(letter.headers)
        assert headers["eoflow.offset"] == b"1"
        assert ("cannot encode the value {1, 2} for topic 'out' with json: Object of type "
                "set is not JSON serializable") in headers["eoflow.error"].decode()


async def test_a_key_its_topic_cannot_encode_is_named_as_the_key() -> None:
    app = eoflow.App("unencodable-key")
    src = app.topic("in", partitions=1)
    out = app.topic("out", partitions=1)  # raw keys: bytes

    @app.agent(src)
    async def agent(stream: eoflow.Stream[Any, Any]) -> None:
        async for value in stream:
            await out.send(key=42 if value == "bad" else b"k", value=value)

    async with TestDriver(app) as driver:
        await driver.send("in", "bad")
        await driver.settle()
        [letter] = driver.dead_letters()
        assert "cannot encode the key 42 for topic 'out' with raw" in \
            dict(letter.headers)["eoflow.error"].decode()
