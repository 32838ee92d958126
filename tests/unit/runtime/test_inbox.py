"""The agent inbox: batches in, items out one at a time, room counted in items."""

from __future__ import annotations

import asyncio

import pytest

from eoflow._inbox import Inbox


def test_items_come_out_one_at_a_time_in_the_order_their_batches_went_in() -> None:
    inbox: Inbox[int] = Inbox()
    inbox.put([1, 2])
    inbox.put([3])
    assert len(inbox) == 3
    assert [inbox.pop(), inbox.pop(), inbox.pop(), inbox.pop()] == [1, 2, 3, None]
    assert inbox.empty()


def test_a_batch_frees_its_room_once_the_item_after_its_last_is_asked_for() -> None:
    inbox: Inbox[int] = Inbox(maxsize=3)
    inbox.put([1, 2])
    assert inbox.room() == 1
    assert inbox.pop() == 1
    assert inbox.pop() == 2
    assert inbox.room() == 1  # 2 is still in hand
    assert inbox.pop() is None
    assert inbox.room() == 3


def test_putting_more_than_the_room_is_refused() -> None:
    inbox: Inbox[int] = Inbox(maxsize=2)
    inbox.put([1])
    with pytest.raises(RuntimeError, match="inbox full"):
        inbox.put([2, 3])


def test_what_an_agent_did_not_take_stays_for_the_next_one() -> None:
    inbox: Inbox[int] = Inbox()
    inbox.put([1, 2, 3])
    assert inbox.pop() == 1
    assert len(inbox) == 2
    assert inbox.pop() == 2  # a restarted agent pops on from here
    assert inbox.pop() == 3


def test_clear_drops_everything_and_frees_the_room() -> None:
    inbox: Inbox[int] = Inbox(maxsize=2)
    inbox.put([1, 2])
    assert inbox.pop() == 1
    inbox.clear()
    assert inbox.room() == 2
    assert inbox.pop() is None


async def test_a_full_inbox_makes_the_putter_wait_until_a_batch_is_done() -> None:
    inbox: Inbox[int] = Inbox(maxsize=1)
    inbox.put([1])
    waiter = asyncio.ensure_future(inbox.wait_room())
    await asyncio.sleep(0)
    assert not waiter.done()
    assert inbox.pop() == 1
    await asyncio.sleep(0)
    assert not waiter.done()  # 1 is in hand
    assert inbox.pop() is None
    await asyncio.wait_for(waiter, 1)


async def test_the_taker_waits_for_the_next_batch() -> None:
    inbox: Inbox[int] = Inbox()
    waiter = asyncio.ensure_future(inbox.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    inbox.put([7])
    await asyncio.wait_for(waiter, 1)
    assert inbox.pop() == 7
