"""The web server of real workers: the word-count app in two ``eoflow worker`` processes.

Scrapes ``/metrics`` until the lag is 0 and commits grow, asks each worker for every
word's count (a worker that does not own a word routes the request to the one that does),
and reads the group with ``eoflow status``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eoflow.testing import produce

REPO = Path(__file__).resolve().parents[2]
LINES = ["the quick brown fox", "jumps over the lazy dog", "the dog sleeps",
         "a fox is quick", "over and over"] * 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def namespace() -> str:
    return f"web{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workers(tmp_path: Path, kafka_bootstrap: str,
            namespace: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    env = {**os.environ, "EOFLOW_NAMESPACE": namespace,
           "EOFLOW_BROKER": f"kafka://{kafka_bootstrap}", "EOFLOW_SESSION_TIMEOUT": "6"}
    procs, urls = [], []
    try:
        for i in range(2):
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "eoflow.cli", "worker", "-A", "apps.wordcount",
                 "--datadir", str(tmp_path / f"w{i}"), "--web-port", str(port)],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / f"w{i}.log", "wb")))  # noqa: SIM115
            urls.append(f"http://127.0.0.1:{port}")
        yield urls, env
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, object]:
    try:
        async with session.get(url) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()
    except aiohttp.ClientError as exc:
        return 0, repr(exc)


def metric(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name}


async def until(what: str, check: object, timeout: float = 90.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()  # type: ignore[operator]
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def test_metrics_routing_and_status_of_two_wordcount_workers(
        workers: tuple[list[str], dict[str, str]], kafka_bootstrap: str,
        namespace: str) -> None:
    urls, env = workers
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        async def all_ready() -> bool:
            answers = [await get(session, f"{url}/ready") for url in urls]
            members = [await get(session, f"{url}/status") for url in urls]
            return all(status == 200 for status, _ in answers) and all(
                status == 200 and len(body["members"]) == 2  # type: ignore[index]
                for status, body in members)

        await until("both workers ready, each knowing the other", all_ready)
        scraped = [str((await get(session, f"{url}/metrics"))[1]) for url in urls]
        before = sum(metric(text, "eoflow_commits_total")[()] for text in scraped)
        await produce(kafka_bootstrap, f"{namespace}.lines",
                      [(None, line.encode()) for line in LINES])
        expected = collections.Counter(w for line in LINES for w in line.split())

        async def settled() -> list[str] | None:
            texts = [await get(session, f"{url}/metrics") for url in urls]
            if any(status != 200 for status, _ in texts):
                return None
            bodies = [str(body) for _, body in texts]
            lags = [v for body in bodies
                    for v in metric(body, "eoflow_consumer_lag").values()]
            consumed = sum(v for body in bodies for labels, v in
                           metric(body, "eoflow_records_in_total").items()
                           if labels == (("topic", f"{namespace}.lines"),))
            return bodies if consumed == len(LINES) and lags and not any(lags) else None

        bodies = await until("every line consumed and the lag 0", settled)
        after = sum(metric(b, "eoflow_commits_total")[()] for b in bodies)  # type: ignore[attr-defined]
        assert after >= before + 2  # each worker committed what it processed

        served_by = set()
        for word, count in expected.items():
            for url in urls:
                status, body = await get(session, f"{url}/tables/counts/{word}")
                assert status == 200, (url, word, body)
                assert body["value"] == count  # type: ignore[index]
                if body["served_by"] != url:  # type: ignore[index]
                    served_by.add(body["served_by"])  # type: ignore[index]
        assert served_by == set(urls)  # each worker was asked for a word the other owns

    status = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "eoflow.cli", "status", "-A", "apps.wordcount"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert out.count("member ") == 2 and all(url in out for url in urls), out
    assert f"{namespace}.lines[0]" in out and "last commit" in out, out
    members = [line for line in out.splitlines() if line.startswith("member ")]
    # each member is named by its instance id and matched to the commits it made
    assert not any("last commit never" in line for line in members), out
