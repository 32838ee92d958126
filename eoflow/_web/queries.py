"""``GET /tables/{table}/{key}``: committed table state, from whichever worker owns the key.

Answers come from the table partition's **store**, which holds only what committed
transactions wrote (the open interval's writes sit in its overlay until EndTxn, and an
aborted interval's writes never leave it). They never come from the overlay.

Which partition holds a key? A table write goes to the partition of the event being
processed, so the answer depends on how the app keys its records. eoflow tries the
partitions the default partitioner (murmur2) gives the key encoded with the table's key
serializer, then with the key serializer of each co-partitioned source topic (a table
keyed like its source topic, or after ``group_by``, is found at the first try); ``?partition=N``
names the partition outright. For each candidate, the owner answers: this worker from
its store, another worker through a proxied request (its address comes from the group's
host map, see ``_transport.membership``). A proxied request carries
``X-Eoflow-Forwarded`` and is answered locally only, so requests never loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from eoflow._transport.batching import default_partition
from eoflow.errors import EoflowError

if TYPE_CHECKING:
    from eoflow._runtime.worker import Worker
    from eoflow._table import Table

__all__ = ["FORWARDED", "TableQueries", "candidate_partitions", "parse_key"]

#: Header of a request one worker proxies to another (answered locally only).
FORWARDED = "X-Eoflow-Forwarded"
PROXY_TIMEOUT = 10.0


def parse_key(table: Table[Any, Any], text: str) -> Any:
    """The key in a URL as the table's key: JSON when the table's keys are JSON (a word
    that is not JSON is a string, as ``eoflow table get`` reads it), else the text."""
    if table.key_codec.name != "json":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def candidate_partitions(key: Any, count: int, codecs: list[Any]) -> list[int]:
    """Partitions the key may be in: murmur2 of the key as each codec encodes it."""
    found: list[int] = []
    for codec in codecs:
        try:
            raw = codec.dumps(key)
        except Exception:  # this codec cannot encode such a key: not a candidate
            continue
        if isinstance(raw, bytes):
            partition = default_partition(raw, count)
            if partition not in found:
                found.append(partition)
    return found


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]


class TableQueries:
    """The handler of ``/tables/{table}/{key}`` for one worker."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def handle(self, request: web.Request) -> web.Response:
        name, text = request.match_info["table"], request.match_info["key"]
        answer = await self._answer(request, name, text)
        return web.json_response(answer.body, status=answer.status)

    async def _answer(self, request: web.Request, name: str, text: str) -> _Answer:
        worker = self._worker
        table = worker.app.tables.get(name)
        if table is None:
            return _Answer(404, {"error": f"app {worker.app.id!r} has no table {name!r}",
                                 "tables": sorted(worker.app.tables)})
        if table.windowed is not None:
            return _Answer(400, {"error": f"table {name!r} is windowed; windowed tables "
                                 "cannot be queried over HTTP yet"})
        manager = worker.tables
        if manager is None:
            return _Answer(503, {"error": "the worker is starting; retry"})
        key = parse_key(table, text)
        try:
            key_bytes = table.key_codec.dumps(key)
        except EoflowError as exc:
            return _Answer(400, {"error": f"key {text!r}: {exc}"})
        count = manager.partition_count(name)
        if table.global_:
            return self._local(table, 0, key_bytes, key)
        asked = request.query.get("partition")
        if asked is not None:
            if not asked.isdigit() or int(asked) >= count:
                return _Answer(400, {"error": f"partition={asked!r}: table {name!r} has "
                                     f"{count} partitions (0 to {count - 1})"})
            candidates = [int(asked)]
        else:
            codecs = [table.key_codec] + [worker.app.topics[t].key_codec
                                          for t in manager.source_topics(name)
                                          if t in worker.app.topics]
            candidates = candidate_partitions(key, count, codecs)
        return await self._route(request, table, key, key_bytes, text, candidates)

    async def _route(self, request: web.Request, table: Table[Any, Any], key: Any,
                     key_bytes: bytes, text: str, candidates: list[int]) -> _Answer:
        worker, manager = self._worker, self._worker.tables
        assert manager is not None
        forwarded = FORWARDED in request.headers
        unavailable: list[str] = []
        for partition in candidates:
            if partition in manager.partitions(table.name):
                answer = self._local(table, partition, key_bytes, key)
                if answer.status != 404:
                    return answer
                continue
            owner = None if forwarded else self._owner(table.name, partition)
            if owner is None or owner == worker.web_url:
                unavailable.append(f"partition {partition}: "
                                   + ("restoring here" if owner else "no owner known"))
                continue
            answer = await self._proxy(owner, table.name, text, partition)
            if answer.status == 404:
                continue
            return answer
        if unavailable:
            return _Answer(503, {"error": f"table {table.name!r} key {text!r}: "
                                 + "; ".join(unavailable) + " (a rebalance or restore is "
                                 "under way?); retry", "partitions": candidates})
        return _Answer(404, {"error": f"key {text!r} not found in table {table.name!r}",
                             "partitions": candidates})

    def _local(self, table: Table[Any, Any], partition: int, key_bytes: bytes,
               key: Any) -> _Answer:
        manager = self._worker.tables
        assert manager is not None
        try:
            raw = manager.committed_get(table.name, partition, key_bytes)
        except EoflowError as exc:  # closed or moved while we looked
            return _Answer(503, {"error": f"table {table.name!r} partition {partition}: "
                                 f"{exc}; retry"})
        if raw is None:
            return _Answer(404, {"error": f"key {key!r} not found in table {table.name!r}",
                                 "partitions": [partition]})
        return _Answer(200, {"table": table.name, "key": key, "value": _render(table, raw),
                             "partition": partition, "served_by": self._worker.web_url})

    def _owner(self, table: str, partition: int) -> str | None:
        """The web address of the worker that owns ``table``'s partition."""
        worker, manager = self._worker, self._worker.tables
        if worker.consumer is None or manager is None:
            return None
        for url, tps in worker.consumer.peers().items():
            if (table, partition) in manager.table_partitions(tps):
                return url
        return None

    async def _proxy(self, owner: str, table: str, text: str, partition: int) -> _Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT))
        url = f"{owner}/tables/{quote(table, safe='')}/{quote(text, safe='')}"
        try:
            async with self._session.get(url, params={"partition": str(partition)},
                                         headers={FORWARDED: "1"}) as response:
                body = await response.json(content_type=None)
                return _Answer(response.status, body if isinstance(body, dict) else
                               {"error": f"unexpected answer from {owner}: {body!r}"})
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return _Answer(502, {"error": f"table {table!r} partition {partition} is owned by "
                                 f"the worker at {owner}, which did not answer: {exc!r}"})


def _render(table: Table[Any, Any], raw: bytes) -> Any:
    """A stored value as JSON: JSON values as they are, anything else decoded as text."""
    try:
        return json.loads(raw)
    except ValueError:
        value = table.value_codec.loads(raw)
        return value if isinstance(value, str | int | float | bool) else repr(value)
