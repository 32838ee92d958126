"""What `eoflow verify` compares and how it reports, without a broker."""

from __future__ import annotations

import pytest

from eoflow._verify import _compare, _dead_letters, verify
from eoflow.errors import ConfigurationError
from tests.integration import verify_apps


def test_a_difference_shows_where_the_runs_part_and_the_inputs_of_its_key() -> None:
    expected = {"topic counts": {"'k1'": [str(n) for n in range(1, 21)]}}
    got = {"topic counts": {"'k1'": [*map(str, range(1, 12)), "1", "2"]}}
    inputs = [("events", f"k{i % 2}", {"id": i}) for i in range(6)]
    [difference] = _compare(expected, got, False, inputs)
    assert "20 values expected, 13 got; they part at #11" in difference
    assert "expected [..., 9, 10, 11, 12, 13, 14, ...], got [..., 9, 10, 11, 1, 2]" in difference
    assert "inputs with key 'k1': #1 events: {'id': 1}; #3 events: {'id': 3}; #5" in difference


def test_dead_letters_compare_as_a_multiset_by_source_topic() -> None:
    letters = [(b"k", b"v2", [("eoflow.topic", b"ns.orders")]),
               (b"k", b"v1", [("eoflow.topic", b"ns.orders")])]
    assert _dead_letters(letters, "ns.") == {"orders": ["b'k'=b'v1'", "b'k'=b'v2'"]}


async def test_an_app_with_timers_needs_to_say_what_they_write() -> None:
    with pytest.raises(ConfigurationError, match=r"timers \(.*tick\).*--ignore"):
        await verify("tests.integration.verify_apps:windowed", verify_apps.windowed,
                     verify_apps.orders(10), bootstrap="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="no such topic or table"):
        await verify("tests.integration.verify_apps:windowed", verify_apps.windowed,
                     verify_apps.orders(10), bootstrap="127.0.0.1:1", ignore=["tiks"])
