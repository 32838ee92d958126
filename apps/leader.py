"""A timer that runs on one worker of the group, feeding an agent.

A port of faust-streaming's ``examples/leader.py``. Run it (``make kafka-start`` first),
as many workers as you like, each with its own data directory::

    eoflow worker -A apps.leader --datadir ./leader-1 &
    eoflow worker -A apps.leader --datadir ./leader-2 &

Every 2 s the leader (the worker assigned partition 0 of ``leader-example-say``) sends a
greeting to the agent ``say``, which has no topic of its own declared and so reads
``leader-example-say`` (``{app_id}-{agent}``, as in Faust). ``say`` logs each greeting
and yields ``"heard <greeting>"`` to ``greetings``. Greetings have no key, so they
spread over the partitions of both topics, in no particular order. With two workers,
greetings still come every 2 s, not every 1 s. To greet it by hand::

    eoflow send leader-example-say hello -A apps.leader

What a crash does: a timer run belongs to the commit interval it runs in. If the worker
dies before that interval commits, the run's greeting is discarded and the run is **not**
repeated (the next one comes 2 s after the restart): a timer's sends are at most once,
and never twice. ``say``'s outputs are exactly once: each committed greeting appears in
``greetings`` once.

What differs from the Faust example:

- ``say`` yields to a sink topic, ``greetings``, instead of only printing, so its work
  is visible to a ``read_committed`` reader (and checkable).
- The greeting is still ``str(random.random())``: timers run on the wall clock, which
  ``eoflow verify`` cannot replay, so it would have to ``--ignore`` what the timer writes
  anyway. Use a seeded generator (or event data) wherever an agent's output must be
  reproducible.
- Values are plain strings (``value_serializer="str"``) instead of Faust's app-wide
  ``value_serializer='raw'``: eoflow sets serializers per topic.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import eoflow

log = logging.getLogger(__name__)

app = eoflow.App("leader-example", topic_partitions=4)

greetings = app.topic("greetings", value_serializer="str")


@app.timer(2.0, on_leader=True)
async def publish_greetings() -> None:
    log.info("PUBLISHING ON LEADER!")
    await say.send(value=str(random.random()))


@app.agent(sink=[greetings])
async def say(stream: eoflow.Stream[bytes, str]) -> AsyncIterator[str]:
    async for greeting in stream:
        log.info("%s", greeting)
        yield f"heard {greeting}"
