"""restore_partition failures surface as RestoreError naming the changelog partition."""

from __future__ import annotations

import pytest
from aiokafka.structs import TopicPartition

from eoflow._state.errors import RestoreError
from eoflow._state.restore import RestoreStats, restore_partition
from eoflow._state.store import MemoryPartitionStore, StoreIdentity


async def test_unreachable_broker_raises_restore_error_naming_the_partition() -> None:
    store = MemoryPartitionStore(StoreIdentity("app", "t", 2, 4))
    with pytest.raises(RestoreError, match=r"app-t-changelog\[2\]") as caught:
        await restore_partition("127.0.0.1:1", TopicPartition("app-t-changelog", 2), store)
    assert caught.value.retriable
    assert store.changelog_offset is None


def test_stats_rate() -> None:
    stats = RestoreStats(
        "t", 0, records=500, seconds=2.0, start_offset=0, end_offset=600, rebuilt=False
    )
    assert stats.records_per_second == 250.0
