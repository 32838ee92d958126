"""An agent instance's inbox: the events handed to it and not yet taken, in batches.

The dispatcher puts one batch per fetched partition (a list of events, in offset order)
with no await; the agent takes them one at a time with :meth:`Inbox.pop`, a plain method
call, so an event costs neither an ``asyncio.Queue`` put and get nor an await. The inbox
holds at most ``maxsize`` events, counting the batch being taken until its last event was
processed (the agent asks for the next): the dispatcher puts no more than :meth:`room` and
waits in :meth:`wait_room` when there is none.

What the agent has not taken stays here, so an agent that returns and is restarted goes on
with the next event. One producer (the dispatcher) and one consumer (the agent task).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Batches of items, taken one item at a time; at most ``maxsize`` items (0: no limit)."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize if maxsize > 0 else sys.maxsize
        self._batches: deque[list[T]] = deque()
        self._head: list[T] = []  # the batch being taken
        self._index = 0  # the next item of _head
        self._size = 0  # items put and not yet released (queued, or in the batch taken)
        self._ready = asyncio.Event()  # set while an item may be there to take
        self._room = asyncio.Event()  # set while _size < maxsize
        self._room.set()

    def __len__(self) -> int:
        """Items not taken yet."""
        return len(self._head) - self._index + sum(len(b) for b in self._batches)

    def empty(self) -> bool:
        return self._index >= len(self._head) and not self._batches

    def room(self) -> int:
        """How many items :meth:`put` may add now."""
        return self.maxsize - self._size

    def put(self, batch: list[T]) -> None:
        """Add ``batch`` (at most :meth:`room` items; the caller checks)."""
        if not batch:
            return
        if len(batch) > self.maxsize - self._size:
            raise RuntimeError(f"inbox full: {self._size} of {self.maxsize} items, "
                               f"{len(batch)} more")
        self._batches.append(batch)
        self._size += len(batch)
        if self._size >= self.maxsize:
            self._room.clear()
        self._ready.set()

    async def wait_room(self) -> None:
        """Return once :meth:`room` is above zero."""
        while self._size >= self.maxsize:
            await self._room.wait()

    def pop(self) -> T | None:
        """The next item, or None when there is none (the items taken before it are done
        with: a batch taken to its end frees its room)."""
        index = self._index
        if index < len(self._head):
            self._index = index + 1
            return self._head[index]
        self._release()
        if not self._batches:
            self._ready.clear()
            return None
        self._head = self._batches.popleft()
        self._index = 1
        return self._head[0]

    async def wait(self) -> None:
        """Return once an item is there to :meth:`pop`."""
        while self.empty():
            self._ready.clear()
            await self._ready.wait()

    def clear(self) -> None:
        """Drop every item, taken or not (the agents were cancelled)."""
        self._batches.clear()
        self._head, self._index, self._size = [], 0, 0
        self._ready.clear()
        self._room.set()

    def _release(self) -> None:
        if self._head:
            self._size -= len(self._head)
            self._head, self._index = [], 0
            if self._size < self.maxsize:
                self._room.set()
