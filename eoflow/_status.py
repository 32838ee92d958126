"""``eoflow status``: the app's consumer group as the broker sees it, as text."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from eoflow._app import App
from eoflow._runtime.topology import discover
from eoflow._settings import parse_broker
from eoflow._transport.group import GroupView, describe_group

__all__ = ["describe", "render"]


async def describe(app: App, broker: str | None) -> GroupView:
    """Members, assignment, committed and end offsets of ``app``'s group."""
    plans = await discover(app)
    topics = sorted({n for plan in plans for spec in plan.specs for t in spec.topics
                     for n in t.names})
    return await describe_group(parse_broker(broker or app.settings.broker), app.id, topics,
                                app.settings.client_options)


def render(view: GroupView) -> str:
    """The text ``eoflow status`` prints."""
    now = time.time()
    lines = [f"group {view.group_id}  state {view.state}  members {len(view.members)}"]
    assigned = set()
    for member in view.members:
        last = view.last_commit(member)
        when = "never" if last is None else (
            f"{datetime.fromtimestamp(last, UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"({max(now - last, 0):.1f}s ago)")
        lines.append(f"member {member.instance_id or member.member_id}  host "
                     f"{member.host.lstrip('/')}  web {member.url or '-'}  last commit {when}")
        for tp in member.partitions:
            assigned.add(tp)
            lines.append("  " + _partition(view, tp))
    rest = [tp for tp in sorted(view.partitions) if tp not in assigned]
    if rest:
        lines.append("unassigned")
        lines.extend("  " + _partition(view, tp) for tp in rest)
    total = sum(p.lag or 0 for p in view.partitions.values())
    lines.append(f"total lag {total}")
    return "\n".join(lines)


def _partition(view: GroupView, tp: object) -> str:
    found = view.partitions.get(tp)  # type: ignore[call-overload]
    if found is None:
        return f"{tp}  committed -  end -  lag -"
    committed = "-" if found.committed is None else str(found.committed)
    end = "-" if found.end is None else str(found.end)
    lag = "-" if found.lag is None else str(found.lag)
    return f"{tp}  committed {committed}  end {end}  lag {lag}"
