"""The consumer's partition assignment keeps a lead's topics together: partition N of topics
partitioned alike goes to one member, for any number of members (KEDA may scale to any)."""

from __future__ import annotations

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from shared.kafka import create_consumer
from shared.settings import KafkaSettings

# score's subscriptions as deployed: two lead-keyed topics of 12 partitions, one of 6.
PARTITIONS = {"events.enriched": 12, "score.commands": 12, "crm.feedback": 6}


class Cluster:
    """The one thing an assignor asks of the cluster's metadata."""

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS[topic]))


def assign(
    assignor: type[AbstractPartitionAssignor], members: int
) -> dict[str, dict[str, set[int]]]:
    metadata = {
        f"member-{m:02d}": ConsumerProtocolMemberMetadata(0, sorted(PARTITIONS), b"")
        for m in range(members)
    }
    result = assignor.assign(Cluster(), metadata)
    return {
        member: {topic: set(partitions) for topic, partitions in assignment.assignment}
        for member, assignment in result.items()
    }


def split_leads(assignment: dict[str, dict[str, set[int]]]) -> list[str]:
    """Members holding a partition of events.enriched without the same of score.commands."""
    return [
        member
        for member, topics in assignment.items()
        if topics.get("events.enriched", set()) != topics.get("score.commands", set())
    ]


async def test_the_consumer_assigns_by_range_first_and_offers_round_robin_for_rolling_upgrades() -> (
    None
):
    consumer = create_consumer(
        KafkaSettings(bootstrap_servers="localhost:9092"),
        group_id="g",
        client_id="c",
        max_batch_records=10,
    )
    assert consumer._partition_assignment_strategy == (
        RangePartitionAssignor,
        RoundRobinPartitionAssignor,
    )


def test_range_keeps_each_partition_number_of_lead_keyed_topics_on_one_member() -> None:
    for members in range(1, 13):
        assignment = assign(RangePartitionAssignor, members)
        assert split_leads(assignment) == [], f"{members} members"
        every = [
            (topic, p) for topics in assignment.values() for topic, ps in topics.items() for p in ps
        ]
        assert len(every) == len(set(every)) == sum(PARTITIONS.values())


def test_round_robin_splits_them_once_the_members_do_not_divide_the_partitions() -> None:
    """Why not aiokafka's default: with 5 members a lead's events and commands part ways."""
    assert split_leads(assign(RoundRobinPartitionAssignor, 4)) == []
    assert split_leads(assign(RoundRobinPartitionAssignor, 5)) != []
