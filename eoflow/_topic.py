"""Topics: a name, a partition count and serializers. Declarative; sending needs a worker."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eoflow._serde import Codec, resolve_codec
from eoflow._windows import time_getter
from eoflow.errors import ConfigurationError, SerializationError

if TYPE_CHECKING:
    from eoflow._app import App

__all__ = ["Topic"]

KT = TypeVar("KT")
VT = TypeVar("VT")


class Topic(Generic[KT, VT]):
    """One or more Kafka topics with the same serializers.

    Keys are ``raw`` bytes and values ``json`` by default, as in Faust.
    """

    #: True for the repartition topics eoflow makes: records consumed and committed are
    #: deleted (see ``_runtime.purge``).
    purged: bool = False

    def __init__(
        self,
        app: App,
        names: Sequence[str],
        *,
        partitions: int | None = None,
        key_serializer: str | Codec = "raw",
        value_serializer: str | Codec = "json",
        key_type: type | None = None,
        value_type: type | None = None,
        config: dict[str, str] | None = None,
        pattern: str | None = None,
        timestamp_extractor: Callable[[Any], Any] | str | None = None,
    ) -> None:
        if not names and pattern is None:
            raise ConfigurationError("a topic needs at least one name, or a pattern")
        if names and pattern is not None:
            raise ConfigurationError(f"topic {names[0]!r}: give names or a pattern, not both")
        try:
            self.pattern = None if pattern is None else re.compile(pattern)
        except re.error as exc:
            raise ConfigurationError(f"topic pattern {pattern!r}: {exc}") from None
        names = names or (f"<pattern {pattern}>",)
        if partitions is not None and partitions < 1:
            raise ConfigurationError(f"topic {names[0]!r}: partitions must be >= 1")
        self.app = app
        self.names = tuple(names)
        self.partitions = partitions
        self.key_codec = resolve_codec(key_serializer, key_type, f"topic {names[0]!r} key")
        self.value_codec = resolve_codec(value_serializer, value_type,
                                         f"topic {names[0]!r} value")
        self.config = dict(config or {})
        if timestamp_extractor is not None and not (
                callable(timestamp_extractor) or isinstance(timestamp_extractor, str)):
            raise ConfigurationError(
                f"topic {names[0]!r}: timestamp_extractor={timestamp_extractor!r}: give a "
                "field name or a function of the value returning a datetime or seconds")
        #: The event time of a record of this topic, from its value (None: its Kafka
        #: timestamp). See :func:`eoflow._runtime.dispatcher.extract_time`.
        self.time_of: Callable[[Any], Any] | None = (
            None if timestamp_extractor is None else time_getter(timestamp_extractor))

    def resolve(self, existing: dict[str, int]) -> None:
        """A pattern topic becomes the existing topics its pattern matches (whole names),
        at worker start; they must share one partition count."""
        if self.pattern is None:
            return
        matched = {n: count for n, count in sorted(existing.items())
                   if self.pattern.fullmatch(n)}
        if not matched:
            raise ConfigurationError(
                f"topic pattern {self.pattern.pattern!r} matches no topic: eoflow subscribes "
                "to the topics that exist when the worker starts (create them first)")
        counts = set(matched.values())
        if len(counts) > 1:
            raise ConfigurationError(
                f"topic pattern {self.pattern.pattern!r} matches topics with different "
                f"partition counts {matched}: a source's topics share one count")
        self.names, self.partitions = tuple(matched), counts.pop()

    @property
    def name(self) -> str:
        """The topic name (the first, for a multi-topic source)."""
        return self.names[0]

    def encode(self, key: Any, value: Any) -> tuple[bytes | None, bytes | None]:
        """Serialize a key and value for this topic (``None`` stays ``None``)."""
        try:
            return (None if key is None else self.key_codec.dumps(key),
                    None if value is None else self.value_codec.dumps(value))
        except Exception as exc:
            raise self._unencodable(key, value, exc) from exc

    def _unencodable(self, key: Any, value: Any, exc: Exception) -> SerializationError:
        """The error for a key or value the serializers refused (``exc``), naming which."""
        part, codec, item = "value", self.value_codec, value
        if key is not None:
            try:
                self.key_codec.dumps(key)
            except Exception:
                part, codec, item = "key", self.key_codec, key
        return SerializationError(f"cannot encode the {part} {_short(item)} for topic "
                                  f"{self.name!r} with {codec.name}: {exc}")

    async def send(
        self,
        *,
        key: KT | None = None,
        value: VT | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Add a record to the current transaction.

        Returns once the record belongs to the transaction, without waiting for the broker;
        a delivery failure aborts the transaction (and the interval is processed again).
        With no ``partition`` the producer's default partitioner hashes the key. The
        record's timestamp is ``timestamp`` (seconds since the epoch) or, while processing
        an event, that event's timestamp (event time flows downstream).
        """
        if len(self.names) != 1 or self.pattern is not None:
            raise ConfigurationError(f"cannot send to multi-topic {self.names}: name one topic")
        runtime = self.app._runtime or self.app._require_runtime(f"send to topic {self.name!r}")
        try:  # inline: one call less per record than encode()
            raw_key = None if key is None else self.key_codec.dumps(key)
            raw_value = None if value is None else self.value_codec.dumps(value)
        except Exception as exc:
            raise self._unencodable(key, value, exc) from exc
        if not runtime.send_nowait(self.names[0], raw_key, raw_value, partition, headers,
                                   timestamp):  # the common case costs no second coroutine
            await runtime.send(self.names[0], raw_key, raw_value, partition, headers, timestamp)

    def __repr__(self) -> str:
        return f"<Topic {', '.join(self.names)}>"


def _short(item: Any, limit: int = 80) -> str:
    text = repr(item)
    return text if len(text) <= limit else f"{text[:limit]}..."
