"""Kafka's disk sizing: the inputs of deploy/README.md, "Disks and retention", in one place.

Each topic that keeps by time gets a size cap per partition (`retention.bytes`) above what the
design throughput writes to one of its partitions over its `retention.ms`, so that time, not
size, decides what goes at that rate, and the caps of all topics, with the segment each
partition keeps open (`segment.bytes`), the compacted and Kafka's internal topics, fill at most
`DISK_FILL` of a broker's volume: a burst, a replay or a flood of dead letters deletes a topic's
oldest messages early, it never fills the disk. `plan(events_per_s)` gives the caps, the segment
sizes and the volume for a throughput; tests/deploy/test_data_safety.py holds the manifests to
it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 1 << 20
GIB = 1 << 30
DAY_S = 86_400

# The throughput the prod manifests are sized for: tracked events per second, averaged over the
# retention window (a month for the 30-day topics), not the peak.
DESIGN_EVENTS_PER_S = 100

# What each topic receives per tracked event, uncompressed, in bytes (the record's JSON, key and
# headers): one raw and one enriched event each (contract examples: 0.8-1.2 KB and 1.0-2.4 KB),
# at most one score change (0.45-0.75 KB), a stage change every 10 events (1.1-1.9 KB), a
# routing decision every 20 (about 1 KB), the internal commands and CRM outcomes at a few per
# hundred events. Erasures are too rare to count: their topics get the floor.
BYTES_PER_EVENT = {
    "events.raw": 1000,
    "events.enriched": 1600,
    "leads.scored": 600,
    "leads.lifecycle": 150,
    "routing.sdr": 50,
    "routing.nurture": 50,
    "routing.withdrawals": 10,
    "crm.feedback": 15,
    "enrich.commands": 50,
    "score.commands": 100,
    "router.commands": 25,
    "privacy.erasures": 0,
    "privacy.reports": 0,
}

# Kafka compresses each batch on its own (the topics' `compression.type`), and at these rates a
# producer's batch holds few records: 2:1 is what small batches of JSON give, where large
# batches give 4:1 or more. Measure yours (`kafka-log-dirs.sh --describe`) and adjust.
COMPRESSION_RATIO = 2.0

CAP_MARGIN = 1.5  # a topic's cap is at least 1.5x its design volume per partition
MIN_CAP = 256 * MIB  # and at least this (low-volume topics)
DEAD_LETTER_CAP = 512 * MIB  # per partition of each dead-letter topic
CAP_STEP = 256 * MIB  # caps are rounded up to a multiple of this
# Kafka deletes whole closed segments only: a partition holds up to its cap plus one segment.
SEGMENT_PER_CAP = 8  # segment.bytes: at most an eighth of the cap (a power of two MiB) ...
SEGMENT_RANGE = (32 * MIB, GIB)  # ... within these bounds
# Disk that no cap bounds, per broker: the compacted routing.current (its live leads' current
# routes, ~1 KB each before compression, and up to max.compaction.lag.ms of writes not yet
# compacted) and Kafka's own topics (__consumer_offsets, the KRaft metadata log).
COMPACTED_BUDGET = {"routing.current": 4 * GIB}
INTERNAL_BUDGET = 6 * GIB
# Every cap full, every open segment full, and the above: at most this share of the volume.
DISK_FILL = 0.75

REPLICAS = 3  # each topic's replication factor
BROKERS = 3


@dataclass(frozen=True)
class TopicPlan:
    retention_bytes: int  # per partition
    segment_bytes: int


def design_bytes(topic: str, *, events_per_s: float, retention_ms: int) -> float:
    """What the throughput keeps on one replica of the topic over its retention, compressed."""
    return events_per_s * BYTES_PER_EVENT[topic] * retention_ms / 1000 / COMPRESSION_RATIO


def cap(topic: str, *, events_per_s: float, retention_ms: int, partitions: int) -> int:
    """The smallest `retention.bytes` for the throughput (a dead-letter topic: its fixed cap)."""
    if topic.endswith(".dlq"):
        return DEAD_LETTER_CAP
    volume = design_bytes(topic, events_per_s=events_per_s, retention_ms=retention_ms)
    wanted = max(MIN_CAP, CAP_MARGIN * volume / partitions)
    return math.ceil(wanted / CAP_STEP) * CAP_STEP


def segment(retention_bytes: int) -> int:
    """`segment.bytes` for a cap: a power of two MiB, an eighth of the cap at most."""
    low, high = SEGMENT_RANGE
    mib = max(1, retention_bytes // SEGMENT_PER_CAP // MIB)
    return min(high, max(low, (1 << (mib.bit_length() - 1)) * MIB))


def footprint(topics: list[tuple[int, int, int, int]], *, brokers: int = BROKERS) -> float:
    """Bytes on one broker with every cap and open segment full: `topics` lists each
    time-keeping topic's (partitions, replicas, retention.bytes, segment.bytes); the compacted
    and internal topics are added from their budgets."""
    capped = sum(
        partitions * replicas * (kept + open_) for partitions, replicas, kept, open_ in topics
    )
    return capped / brokers + sum(COMPACTED_BUDGET.values()) + INTERNAL_BUDGET


def volume_size(topics: list[tuple[int, int, int, int]], *, brokers: int = BROKERS) -> float:
    """The smallest broker volume for these caps: their footprint fills `DISK_FILL` of it."""
    return footprint(topics, brokers=brokers) / DISK_FILL


def plan(
    events_per_s: float, layout: dict[str, tuple[int, int]]
) -> tuple[dict[str, TopicPlan], float]:
    """Each topic's cap and segment size, and the broker volume (bytes), for a throughput;
    `layout` maps each time-keeping topic (dead letters included) to (partitions,
    retention.ms)."""
    plans: dict[str, TopicPlan] = {}
    for topic, (partitions, retention_ms) in layout.items():
        kept = cap(
            topic, events_per_s=events_per_s, retention_ms=retention_ms, partitions=partitions
        )
        plans[topic] = TopicPlan(kept, segment(kept))
    disk = volume_size(
        [
            (layout[topic][0], REPLICAS, p.retention_bytes, p.segment_bytes)
            for topic, p in plans.items()
        ]
    )
    return plans, disk
