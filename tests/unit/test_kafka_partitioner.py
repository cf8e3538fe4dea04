"""The producers' partitioner remembers key hashes but must choose what aiokafka's default (and
the Java client) choose: per-lead ordering depends on it (shared/kafka.py)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import KeyHashPartitioner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("partitions", [1, 3, 4, 12])
def test_keys_go_where_the_default_partitioner_sends_them(partitions: int) -> None:
    remembering = KeyHashPartitioner(remembered_keys=8)
    default = DefaultPartitioner()
    all_partitions = list(range(partitions))
    keys = [str(uuid.UUID(int=n)).encode() for n in range(50)] + [b"", b"anon-1", "é".encode()]

    for key in keys * 2:  # the second pass is answered from memory (or re-hashed if evicted)
        assert remembering(key, all_partitions, all_partitions) == default(
            key, all_partitions, all_partitions
        )


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_partitions_match_the_java_client(key: bytes, partition: int) -> None:
    # Partitions of 1,000 chosen by Kafka's Java producer for these keys (kafka-python's table).
    partitions = list(range(1000))

    assert KeyHashPartitioner()(key, partitions, partitions) == partition


def test_no_key_picks_an_available_partition() -> None:
    assert KeyHashPartitioner()(None, [0, 1, 2, 3], [2]) == 2
