"""Who is where: a set of people per location, from "joined" and "left" events.

A port of faust-streaming's ``examples/tableofset.py``. Run it (``make kafka-start``
first)::

    eoflow worker -A apps.tableofset
    eoflow send people-joining ann --key paris -A apps.tableofset
    eoflow send people-joining bob --key paris -A apps.tableofset
    eoflow send people-leaving ann --key paris -A apps.tableofset

``people-joining`` and ``people-leaving`` (key: the location, value: a name, both plain
strings) -> ``join`` and ``leave`` -> the set table ``people`` (location -> set of names)
and, after each change, the location's members, sorted, to ``people-at``
(``"paris" ["bob"]`` after the three sends above). Every 10 s the worker logs the whole
table.

Both topics are keyed by location and have the table's 4 partitions, so both agents
write a location in the partition that holds it, on the worker that owns that partition.
They are still two topics, as in Faust: nothing orders a join against a leave of the
same location. A leave that overtakes its join (both sent within a few milliseconds) is
applied first and does nothing, and the join then sticks. Put both on one topic (a
value such as ``{"name": ..., "joined": true}``) when their order matters.

What differs from the Faust example:

- Faust prints the location's set after each change; here it is also sent to
  ``people-at``, inside the transaction, so a reader sees each change once.
- Faust's ``joining`` and ``leaving`` commands (``@app.command``, not provided in eoflow)
  are ``eoflow send`` lines, as above.
- The 10 s dump logs ``people.items()`` (the partitions this worker owns) instead of
  Faust's ``as_ansitable()``, which eoflow does not have.
- ``value_type=str`` is left out of the ``SetTable``: its value is the set, stored as a
  JSON list.
"""

from __future__ import annotations

import logging

import eoflow

log = logging.getLogger(__name__)

app = eoflow.App("table-of-sets", topic_partitions=4)

people = app.SetTable("people")

joining_topic = app.topic("people-joining", key_type=str, value_type=str)
leaving_topic = app.topic("people-leaving", key_type=str, value_type=str)
people_at = app.topic("people-at", key_type=str, value_serializer="json")


@app.agent(joining_topic)
async def join(stream: eoflow.Stream[str, str]) -> None:
    async for location, name in stream.items():
        log.info("- %s joined %s", name.capitalize(), location)
        people[location].add(name)
        await people_at.send(key=location, value=sorted(people[location]))


@app.agent(leaving_topic)
async def leave(stream: eoflow.Stream[str, str]) -> None:
    async for location, name in stream.items():
        log.info("- %s left %s", name.capitalize(), location)
        people[location].discard(name)
        await people_at.send(key=location, value=sorted(people[location]))


@app.timer(10.0)
async def _dump() -> None:
    log.info("TABLE NOW: %s", {location: sorted(names) for location, names in
                               sorted(people.items())})
