"""Just enough of the Kafka protocol to ask one given broker for metadata or a coordinator,
with the standard library and no event loop.

The cluster uses it to check that a node has registered and to find leaders, in-sync
replicas and coordinators while nodes are being killed: every request goes to a node the
caller picks, so a dead node is skipped deterministically. Non-flexible request versions
that every broker from 2.1 to 4.x serves (Metadata v7, FindCoordinator v2); PLAINTEXT only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from tools.kafka._errors import KafkaProtocolError

API_METADATA = 3
API_FIND_COORDINATOR = 10
#: COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
RETRIABLE_COORDINATOR_ERRORS = frozenset({14, 15, 16})
#: FindCoordinator key types.
GROUP, TRANSACTION = 0, 1

#: What may go wrong talking to a node: it is down, closed the socket, or sent garbage.
WIRE_ERRORS = (OSError, ConnectionError, struct.error, ValueError)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def int8(self) -> int:
        return self._unpack(">b")

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def string(self) -> str | None:
        n = self.int16()
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def array(self, item: Callable[[], Any]) -> list[Any]:
        n = self.int32()
        return [item() for _ in range(max(n, 0))]


def _w_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class KafkaConnection:
    """One blocking PLAINTEXT connection to one broker."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._corr = 0
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> KafkaConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metadata(self, topics: list[str] | None = None) -> dict[str, Any]:
        """Metadata v7. ``topics=None``: all topics; ``[]``: brokers only.

        Returns ``{"brokers": {id: "host:port"}, "controller_id": int, "topics": {name:
        {"error": int, "partitions": {index: {"leader", "replicas", "isr", "error"}}}}}``.
        """
        if topics is None:
            body = struct.pack(">i", -1)
        else:
            body = struct.pack(">i", len(topics)) + b"".join(_w_str(t) for t in topics)
        r = self._call(API_METADATA, 7, body + b"\0")  # allow_auto_topic_creation=false
        r.int32()  # throttle
        brokers: dict[int, str] = {}
        for _ in range(r.int32()):
            node, host, port, _rack = r.int32(), r.string(), r.int32(), r.string()
            brokers[node] = f"{host}:{port}"
        r.string()  # cluster id
        controller = r.int32()
        topics_out = dict(self._topic(r) for _ in range(r.int32()))
        return {"brokers": brokers, "controller_id": controller, "topics": topics_out}

    def find_coordinator(self, key: str, key_type: int) -> int:
        """FindCoordinator v2 (``key_type`` :data:`GROUP` or :data:`TRANSACTION`): the
        coordinator's node id. Raises :class:`KafkaProtocolError` with the broker's code."""
        r = self._call(API_FIND_COORDINATOR, 2, _w_str(key) + struct.pack(">b", key_type))
        r.int32()  # throttle
        code, message, node = r.int16(), r.string(), r.int32()
        if code != 0:
            raise KafkaProtocolError(f"FindCoordinator {key!r}", code, message)
        return node

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _topic(r: _Reader) -> tuple[str, dict[str, Any]]:
        err, name, _internal = r.int16(), r.string() or "", r.int8()
        parts: dict[int, dict[str, Any]] = {}
        for _ in range(r.int32()):
            perr, index, leader, _epoch = r.int16(), r.int32(), r.int32(), r.int32()
            replicas, isr = r.array(r.int32), r.array(r.int32)
            r.array(r.int32)  # offline replicas
            parts[index] = {"leader": leader, "replicas": replicas, "isr": isr, "error": perr}
        return name, {"error": err, "partitions": parts}

    def _call(self, api_key: int, version: int, body: bytes) -> _Reader:
        self._corr += 1
        header = struct.pack(">hhi", api_key, version, self._corr) + _w_str("eoflow-kafkactl")
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        (size,) = struct.unpack(">i", self._recv(4))
        r = _Reader(self._recv(size))
        if r.int32() != self._corr:
            raise ConnectionError(f"{self.address}: correlation id mismatch")
        return r

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"{self.address} closed the connection")
            buf += chunk
        return bytes(buf)
