"""The remembering partitioner chooses exactly what aiokafka's (Java-compatible) one does."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.ingest.partitioning import KeyCachingPartitioner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("partitions", [[0], [0, 1, 2, 3], list(range(12))])
def test_the_same_partition_as_aiokafka_for_every_key_asked_twice(partitions: list[int]) -> None:
    cached = KeyCachingPartitioner()
    keys = [f"anon-{n}".encode() for n in range(500)] + ["usr-ü".encode(), b""]

    for _ in range(2):  # the second round comes from the cache
        assert [cached(key, partitions, partitions) for key in keys] == [
            DefaultPartitioner()(key, partitions, partitions) for key in keys
        ]


def test_a_changed_partition_count_is_a_new_choice() -> None:
    cached = KeyCachingPartitioner()
    choices = {cached(b"anon-7", list(range(n)), list(range(n))) for n in (1, 2, 4, 8, 16)}

    assert choices == {
        DefaultPartitioner()(b"anon-7", list(range(n)), list(range(n))) for n in (1, 2, 4, 8, 16)
    }


def test_a_keyless_record_goes_to_an_available_partition() -> None:
    assert KeyCachingPartitioner()(None, [0, 1, 2, 3], [2]) == 2
