"""What each Kafka client may do, derived from the code, and what a rendered KafkaUser allows.

- A service reads what it hands the consumer runner (`subscriptions=[...]` in its modules) and
  writes what `shared/topics.py` names it the producer of, plus the dead-letter topics of what it
  reads, plus `privacy.reports` when its modules call `shared.privacy.erasure_report` (the
  helper that makes a service's erasure report: a check that the registry's producers of
  `privacy.reports` are every service that reports). Its `replay-dead-letters` command (shared/consumer/operations.py) reads those
  dead-letter topics in a group of its own and writes their letters back onto what it reads.
- A topic's `producer` in `shared/topics.py` is one writer or a comma-separated list of them
  ("score, router, console"), each possibly marked "(internal)" (`producers(topic)`).
- CRMs read the routing decisions (the topics router alone produces for outside readers: not its
  `(internal)` ones) and the erasure notices (`privacy.erasures`: a CRM connector that keeps
  copies of leads erases them too), and write the topics whose producers include "CRMs"
  (`crm.feedback`: "CRMs, ingest", which also takes it over HTTP).

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
from shared.topics import ALL_TOPICS, PRIVACY_ERASURES, PRIVACY_REPORTS, Topic
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


@dataclass(frozen=True)
class Producer:
    """One writer of a topic as `shared/topics.py` names it: "enrich (internal)" is
    Producer("enrich", internal=True)."""

    name: str
    internal: bool


def producers(topic: Topic) -> list[Producer]:
    """The writers a topic's `producer` names: one ("router", "enrich (internal)", "CRMs") or a
    comma-separated list ("score, router, console"), in that order."""
    found = []
    for part in topic.producer.split(","):
        words = part.split()
        assert words, f"{topic.name}: an empty producer in {topic.producer!r}"
        assert words[1:] in ([], ["(internal)"]), (
            f"{topic.name}: cannot read the producer {part.strip()!r} (a name, optionally"
            " followed by (internal); several separated by commas)"
        )
        found.append(Producer(words[0], internal=words[1:] == ["(internal)"]))
    return found


# Helpers of shared/ that make a service's output for a topic: a service whose modules call one
# produces that topic, whatever the registry's `producer` says.
OUTPUT_HELPERS: dict[str, Topic] = {"erasure_report": PRIVACY_REPORTS}


def helper_outputs(service: str) -> set[Topic]:
    """The topics the service produces through `OUTPUT_HELPERS` (a call by the helper's name,
    `erasure_report(...)` or `privacy.erasure_report(...)`)."""
    found: set[Topic] = set()
    for module in _modules(service):
        for node in ast.walk(module):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = (
                function.id
                if isinstance(function, ast.Name)
                else function.attr
                if isinstance(function, ast.Attribute)
                else None
            )
            if name in OUTPUT_HELPERS:
                found.add(OUTPUT_HELPERS[name])
    return found


def produced(service: str) -> list[Topic]:
    """The topics `shared/topics.py` names the service a producer of (`enrich (internal)` and
    one of several, "score, router, console", included), and those it produces through a
    helper of shared/ (`OUTPUT_HELPERS`), in the registry's order."""
    helped = helper_outputs(service)
    return [
        topic
        for topic in ALL_TOPICS
        if topic in helped or any(p.name == service for p in producers(topic))
    ]


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
    """What a CRM does to topics: reads the routing decisions and the erasure notices, writes
    its feedback."""
    needs: set[Grant] = set()
    for topic in ALL_TOPICS:
        # Router's decisions for outside readers: not "router (internal)", and not the reports
        # router writes with others ("score, router, console": privacy.reports, for enrich).
        if producers(topic) == [Producer("router", internal=False)]:
            needs |= _topic(topic.full_name(prefix), "Read", "Describe")
        if Producer("CRMs", internal=False) in producers(topic):
            needs |= _topic(topic.full_name(prefix), "Write", "Describe")
    # Erasure notices: a CRM connector erases its copies of the leads (it reports nothing).
    needs |= _topic(PRIVACY_ERASURES.full_name(prefix), "Read", "Describe")
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
