"""eoflow: exactly-once stream processing for Apache Kafka, in the style of Faust.

::

    app = eoflow.App("wordcount", broker="kafka://127.0.0.1:9092")
    words = app.topic("words", partitions=8)
    counts = app.Table("counts", default=int)

    @app.agent(words)
    async def count(stream):
        async for word in stream:
            counts[word] += 1
"""

from eoflow import errors
from eoflow._app import AgentHandle, App
from eoflow._models import Record
from eoflow._security import OAuthCredentials, SASLCredentials, SSLCredentials
from eoflow._settings import Settings
from eoflow._stream import Event, Stream
from eoflow._table import GlobalTable, SetTable, Table
from eoflow._topic import Topic
from eoflow._windows import Window, WindowedTable, WindowSet

__all__ = ["AgentHandle", "App", "Event", "GlobalTable", "OAuthCredentials", "Record",
           "SASLCredentials", "SSLCredentials", "SetTable", "Settings", "Stream", "Table",
           "Topic", "Window", "WindowSet", "WindowedTable", "errors"]
__version__ = "0.1.0"
