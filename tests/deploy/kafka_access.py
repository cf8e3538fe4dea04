"""What each Kafka client may do, derived from the code, and what a rendered KafkaUser allows.

- A service reads what it hands the consumer runner (`subscriptions=[...]` in its modules) and
  writes what `shared/topics.py` names it the producer of, plus the dead-letter topics of what it
  reads. Its `replay-dead-letters` command (shared/consumer/operations.py) reads those
  dead-letter topics in a group of its own and writes their letters back onto what it reads.
- CRMs read the routing decisions (the topics router produces for outside readers: not its
  `(internal)` ones) and write the topics whose producer is "CRMs".

`granted(user)` flattens a KafkaUser's ACLs into one `Grant` per operation, so the two compare
as sets.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import shared.topics
from shared.consumer.operations import dead_letter_replay_group
from shared.consumer.runner import consumer_group
from shared.settings import KafkaSettings
from shared.topics import ALL_TOPICS, Topic
from tests.deploy.manifests import REPO, Resource


@dataclass(frozen=True, order=True)
class Grant:
    """One allowed operation on one resource (Kafka's ACL model, Strimzi's field names)."""

    resource: str  # topic, group, cluster, transactionalId
    name: str
    pattern: str  # literal or prefix
    operation: str

    def __str__(self) -> str:
        return f"{self.operation} {self.resource} {self.name}" + (
            "*" if self.pattern == "prefix" else ""
        )


def _modules(service: str) -> list[ast.Module]:
    folder = REPO / "services" / service
    return [ast.parse(path.read_text()) for path in sorted(Path(folder).rglob("*.py"))]


def subscriptions(service: str) -> list[Topic]:
    """The topics a service hands its consumer runner, in the order its code lists them."""
    found: list[Topic] = []
    for module in _modules(service):
        for node in ast.walk(module):
            if isinstance(node, ast.keyword) and node.arg == "subscriptions":
                assert isinstance(node.value, ast.List | ast.Tuple), ast.unparse(node)
                for element in node.value.elts:
                    assert isinstance(element, ast.Name), ast.unparse(element)
                    topic = getattr(shared.topics, element.id)
                    assert isinstance(topic, Topic)
                    found.append(topic)
    return found


def produced(service: str) -> list[Topic]:
    """The topics `shared/topics.py` names the service the producer of (`enrich (internal)`
    included)."""
    return [topic for topic in ALL_TOPICS if topic.producer.split()[0] == service]


def referenced(service: str) -> set[Topic]:
    """Every topic of shared/topics.py the service's modules import."""
    found: set[Topic] = set()
    for module in _modules(service):
        for node in ast.walk(module):
            if isinstance(node, ast.ImportFrom) and node.module == "shared.topics":
                for alias in node.names:
                    value = getattr(shared.topics, alias.name)
                    if isinstance(value, Topic):
                        found.add(value)
    return found


def _topic(name: str, *operations: str) -> set[Grant]:
    return {Grant("topic", name, "literal", operation) for operation in operations}


def _group(name: str, *operations: str) -> set[Grant]:
    return {Grant("group", name, "literal", operation) for operation in operations}


def service_needs(service: str, *, prefix: str) -> set[Grant]:
    """Everything the service's code does on the broker, and nothing else."""
    kafka = KafkaSettings(topic_prefix=prefix)
    reads = subscriptions(service)
    needs: set[Grant] = set()
    for topic in reads:
        # Read: the runner. Write: replay-dead-letters puts letters back.
        needs |= _topic(topic.full_name(prefix), "Read", "Write", "Describe")
        # Write: the runner dead-letters. Read: replay-dead-letters.
        needs |= _topic(topic.dlq_name(prefix), "Read", "Write", "Describe")
    for topic in produced(service):
        needs |= _topic(topic.full_name(prefix), "Write", "Describe")
    if reads:
        needs |= _group(consumer_group(kafka, service), "Read")
        needs |= _group(dead_letter_replay_group(kafka, service), "Read")
    return needs


def crm_topics(*, prefix: str) -> set[Grant]:
    """What a CRM does to topics: reads the routing decisions, writes its feedback."""
    needs: set[Grant] = set()
    for topic in ALL_TOPICS:
        if topic.producer == "router":  # not "router (internal)"
            needs |= _topic(topic.full_name(prefix), "Read", "Describe")
        if topic.producer == "CRMs":
            needs |= _topic(topic.full_name(prefix), "Write", "Describe")
    return needs


def granted(user: Resource) -> set[Grant]:
    """What a KafkaUser's `allow` ACLs allow, one grant per operation (`deny` ACLs only take
    away). A resource without a name is every resource of its type (`*`)."""
    grants: set[Grant] = set()
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        if acl.get("type", "allow") != "allow":
            continue
        resource = acl["resource"]
        for operation in acl.get("operations") or [acl.get("operation")]:
            grants.add(
                Grant(
                    resource["type"],
                    resource.get("name", "*"),
                    resource.get("patternType", "literal"),
                    str(operation),
                )
            )
    return grants
