"""Which topics each consuming service subscribes to, read from its code (the
`subscriptions=[...]` it hands the consumer runner), so the suite covers a topic the day a
service starts consuming it."""

from __future__ import annotations

import ast

import shared.topics
from shared.topics import Topic
from tests.fixtures.infra import REPO

CONSUMING_SERVICES = ("enrich", "score", "router")


def subscriptions() -> dict[str, tuple[Topic, ...]]:
    found: dict[str, tuple[Topic, ...]] = {}
    for service in CONSUMING_SERVICES:
        topics: list[Topic] = []
        for path in sorted((REPO / "services" / service).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.keyword) and node.arg == "subscriptions":
                    assert isinstance(node.value, ast.List | ast.Tuple), ast.unparse(node)
                    for element in node.value.elts:
                        assert isinstance(element, ast.Name), ast.unparse(element)
                        topic = getattr(shared.topics, element.id)
                        assert isinstance(topic, Topic)
                        topics.append(topic)
        assert topics, f"{service}: no subscriptions=[...] found"
        found[service] = tuple(topics)
    return found
