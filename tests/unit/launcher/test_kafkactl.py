"""The local broker launcher's pure helpers (the broker itself is covered by every
integration test that starts one)."""

from __future__ import annotations

from tools.kafka.kafkactl import new_cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    # StorageTool parses "-t -abc..." as a missing argument: ~1 in 64 random ids used to
    # make a broker start fail. 5,000 draws hit a leading "-" with probability 1 - 1e-34.
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not [cid for cid in ids if cid.startswith("-")]
    assert all(len(cid) == 22 for cid in ids)
