"""One worker's view of itself and its group: ``/status`` (JSON) and ``/`` (HTML)."""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .metrics import is_ready, lag

if TYPE_CHECKING:
    from eoflow._runtime.worker import Worker

__all__ = ["snapshot", "status_page"]


def snapshot(worker: Worker) -> dict[str, Any]:
    """What ``/status`` answers: this worker, its partitions and tables, the group's map."""
    committer, rebalance, consumer, tables = (worker.committer, worker.rebalance,
                                              worker.consumer, worker.tables)
    lags = lag(worker)
    assigned = sorted(consumer.assignment()) if consumer is not None else []
    committed = committer.committed if committer is not None else {}
    partitions = [{"topic": tp.topic, "partition": tp.partition,
                   "committed": committed.get(tp), "lag": lags.get(tp)} for tp in assigned]
    table_rows = []
    if tables is not None:
        sizes = tables.sizes()
        for (name, p) in sorted(set(sizes) | set(tables.remaining)):
            table_rows.append({"table": name, "partition": p, "keys": sizes.get((name, p)),
                               "restored": tables.restored.get((name, p), 0),
                               "remaining": tables.remaining.get((name, p), 0)})
    peers = consumer.peers() if consumer is not None else {}
    return {
        "app": worker.app.id,
        "url": worker.web_url,
        "state": worker.state.state.value,
        "ready": is_ready(worker),
        "commits": committer.commits if committer else 0,
        "aborts": committer.aborts if committer else 0,
        "rebalances": rebalance.rebalances if rebalance else 0,
        "last_commit": worker.stats.last_commit,
        "records_in": dict(worker.stats.records_in),
        "records_out": dict(worker.stats.records_out),
        "dead_letters": worker.stats.dead_letters,
        "partitions": partitions,
        "tables": table_rows,
        "members": {url: sorted(map(str, tps)) for url, tps in sorted(peers.items())},
    }


def status_page(status: dict[str, Any]) -> str:
    """A small self-contained HTML page (refreshes itself every 5 seconds)."""
    e = html.escape
    last = status["last_commit"]
    since = "never" if last is None else (
        f"{datetime.fromtimestamp(last, UTC):%Y-%m-%d %H:%M:%S} UTC "
        f"({max(time.time() - last, 0):.1f}s ago)")
    badge = ("ready", "ok") if status["ready"] else (status["state"], "wait")
    rows = "".join(
        f"<tr><td>{e(p['topic'])}</td><td>{p['partition']}</td><td>{_n(p['committed'])}</td>"
        f"<td class='{'ok' if p['lag'] == 0 else 'wait'}'>{_n(p['lag'])}</td></tr>"
        for p in status["partitions"])
    tables = "".join(
        f"<tr><td>{e(t['table'])}</td><td>{t['partition']}</td><td>{_n(t['keys'])}</td>"
        f"<td>{t['restored']}</td><td>{t['remaining']}</td></tr>" for t in status["tables"])
    members = "".join(
        f"<tr><td><a href='{e(url)}/'>{e(url)}</a>{' (this one)' if url == status['url'] else ''}"
        f"</td><td>{e(', '.join(tps))}</td></tr>" for url, tps in status["members"].items())
    flows = "".join(f"<tr><td>{e(topic)}</td><td>{n}</td><td>{status['records_out'].get(topic, '')}"
                    f"</td></tr>" for topic, n in sorted(status["records_in"].items()))
    flows += "".join(f"<tr><td>{e(topic)}</td><td></td><td>{n}</td></tr>"
                     for topic, n in sorted(status["records_out"].items())
                     if topic not in status["records_in"])
    return _PAGE.format(
        app=e(status["app"]), url=e(status["url"] or ""), badge=e(badge[0]), cls=badge[1],
        commits=status["commits"], aborts=status["aborts"], rebalances=status["rebalances"],
        dead=status["dead_letters"], since=e(since), rows=rows or _EMPTY.format(4),
        tables=tables or _EMPTY.format(5), members=members or _EMPTY.format(2),
        flows=flows or _EMPTY.format(3))


def _n(value: Any) -> str:
    return "-" if value is None else str(value)


_EMPTY = "<tr><td colspan='{}' class='none'>none</td></tr>"
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>eoflow · {app}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: .2em; }} h2 {{ font-size: 1.1em; margin-top: 1.6em; }}
.badge {{ padding: .15em .6em; border-radius: 1em; font-size: .8em; color: #fff; }}
.badge.ok {{ background: #2a7; }} .badge.wait {{ background: #c80; }}
table {{ border-collapse: collapse; min-width: 28em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }}
td.ok {{ color: #2a7; }} td.wait {{ color: #c60; font-weight: bold; }}
td.none {{ color: #999; }} .facts span {{ margin-right: 1.5em; }}
</style></head><body>
<h1>{app} <span class="badge {cls}">{badge}</span></h1>
<div class="facts"><span>worker {url}</span><span>commits {commits}</span>
<span>aborts {aborts}</span><span>rebalances {rebalances}</span>
<span>dead letters {dead}</span><span>last commit {since}</span></div>
<h2>Assigned partitions</h2>
<table><tr><th>topic</th><th>partition</th><th>committed offset</th><th>lag</th></tr>
{rows}</table>
<h2>Table partitions</h2>
<table><tr><th>table</th><th>partition</th><th>keys (est.)</th><th>restored</th>
<th>left to restore</th></tr>{tables}</table>
<h2>Records (committed)</h2>
<table><tr><th>topic</th><th>in</th><th>out</th></tr>{flows}</table>
<h2>Group members</h2>
<table><tr><th>worker</th><th>partitions</th></tr>{members}</table>
<p><a href="/status">JSON</a> · <a href="/metrics">metrics</a> · <a href="/health">health</a>
 · <a href="/ready">ready</a></p>
</body></html>
"""
