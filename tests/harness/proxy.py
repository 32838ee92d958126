"""A small asyncio TCP proxy that injects network faults between a client and one broker.

::

    proxy = FaultProxy(upstream_port=broker_port)
    port = await proxy.start()          # clients connect to 127.0.0.1:port
    proxy.latency = 0.25                # 250 ms more in each direction, order kept
    proxy.drop()                        # reset every open connection (RST both ways)
    proxy.black_hole(True)              # nothing flows, nothing is closed ...
    proxy.black_hole(False)             # ... until now: what was held is delivered
    await proxy.close()

A black hole is what a network partition looks like to TCP: connections stay open, the
bytes sent into them go nowhere and nothing comes back. The proxy stops forwarding in
both directions (it reads at most one chunk per direction and holds it, so the kernel
buffers fill and the senders block) and accepts new connections without connecting them
upstream. When the hole closes, the held bytes are delivered, late, like retransmitted
segments after a partition heals, unless a peer closed the connection meanwhile.

It runs in the caller's event loop (the harness's); :meth:`close` stops the listener and
resets every connection. Each direction of each connection is two tasks (reader, writer)
so that latency delays chunks without serialising them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
CHUNK = 64 * 1024


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closed: bool = False

    def abort(self) -> None:
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)
        for task in self.tasks:
            task.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, not a FIN (SO_LINGER 0), like a dropped connection."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


class FaultProxy:
    """Forwards ``127.0.0.1:listen_port`` to ``upstream_host:upstream_port``, with faults."""

    def __init__(self, upstream_port: int, listen_port: int = 0, *,
                 upstream_host: str = HOST, name: str = "") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_port = listen_port
        self.name = name or f"proxy->{upstream_port}"
        #: Seconds added to every chunk in each direction.
        self.latency = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        #: What happened, for reports: connections accepted, dropped, bytes forwarded.
        self.accepted = 0
        self.dropped = 0
        self.forwarded = 0

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; returns the port (a free one unless ``listen_port`` was given)."""
        self._server = await asyncio.start_server(self._accept, HOST, self.listen_port,
                                                  reuse_address=True)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])
        return self.listen_port

    async def close(self) -> None:
        """Stop listening and reset every connection. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop(count=False)
        self._flowing.set()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    @property
    def port(self) -> int:
        return self.listen_port

    # -- faults -----------------------------------------------------------------------
    def drop(self, *, count: bool = True) -> int:
        """Reset every open connection now (clients see ECONNRESET); returns how many."""
        links, self._links = list(self._links), set()
        for link in links:
            link.abort()
        if count:
            self.dropped += len(links)
        return len(links)

    def black_hole(self, on: bool) -> None:
        """Start (``True``) or end (``False``) a black hole: nothing flows meanwhile."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def in_black_hole(self) -> bool:
        return not self._flowing.is_set()

    def heal(self) -> None:
        """No latency, no black hole."""
        self.latency = 0.0
        self._flowing.set()

    def describe(self) -> str:
        return (f"{self.name} :{self.listen_port}->{self.upstream[1]} accepted={self.accepted} "
                f"dropped={self.dropped} open={len(self._links)} bytes={self.forwarded}")

    # -- forwarding -------------------------------------------------------------------
    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(client_w)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a black hole: accepted, never connected upstream
            if link.closed:
                return
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream)
            except OSError:  # the broker is down: the client sees its connection reset
                link.abort()
                return
            link.upstream = up_w
            async with asyncio.TaskGroup() as tg:
                for reader, writer in ((client_r, up_w), (up_r, client_w)):
                    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=64)
                    link.tasks.add(tg.create_task(self._read(reader, queue)))
                    link.tasks.add(tg.create_task(self._write(queue, writer)))
        except (OSError, asyncio.CancelledError, ExceptionGroup):
            pass
        finally:
            self._links.discard(link)
            link.abort()

    async def _read(self, reader: asyncio.StreamReader,
                    queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(CHUNK)
            await queue.put((loop.time(), data))
            if not data:
                return

    async def _write(self, queue: asyncio.Queue[tuple[float, bytes]],
                     writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            arrived, data = await queue.get()
            delay = arrived + self.latency - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._flowing.wait()
            if not data:  # the other side closed: pass the FIN on, then end the link
                with contextlib.suppress(OSError):
                    writer.write_eof()
                    await writer.drain()
                raise ConnectionResetError("peer closed")
            writer.write(data)
            await writer.drain()
            self.forwarded += len(data)
