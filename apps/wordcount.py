"""Word count, exactly once: split lines into words, group them by word, count, emit.

Run it::

    eoflow worker -A apps.wordcount --broker kafka://127.0.0.1:9092
    eoflow send lines "the quick brown fox jumps over the lazy dog" -A apps.wordcount

``lines`` (values: text) -> ``split`` -> ``words`` -> ``count``, which groups the words by
themselves (``group_by``: through the topic ``wordcount-count-word-repartition``, so every
count of one word lives in one partition) -> table ``counts`` and topic ``word-counts``.
"""

from __future__ import annotations

import os

import eoflow

app = eoflow.App(
    "wordcount",
    broker=os.environ.get("EOFLOW_BROKER", "kafka://127.0.0.1:9092"),
    processing_guarantee="exactly_once",
    commit_interval=0.1,
    datadir=os.environ.get("EOFLOW_DATADIR", "./wordcount-data"),
)

lines = app.topic("lines", partitions=4, value_serializer="str")
words = app.topic("words", partitions=4, key_serializer="str", value_serializer="str")
word_counts = app.topic("word-counts", partitions=4, key_serializer="str",
                        value_serializer="json")
counts = app.Table("counts", default=int, partitions=4)


@app.agent(lines)
async def split(stream: eoflow.Stream[bytes, str]) -> None:
    """One line in, its words out."""
    async for line in stream:
        for word in line.lower().split():
            await words.send(value=word)


@app.agent(words)
async def count(stream: eoflow.Stream[str, str]) -> None:
    """Count words in the table and emit the running count."""
    async for word in stream.group_by(str.lower, name="word"):
        counts[word] += 1
        await word_counts.send(key=word, value=counts[word])
