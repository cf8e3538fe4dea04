"""Which topics each consuming service subscribes to, read from its code (the
`subscriptions=[...]` it hands the consumer runner), so the suite covers a topic the day a
service starts consuming it."""

from __future__ import annotations

from shared.topics import Topic
from tests.deploy.kafka_access import subscriptions as subscriptions_of

CONSUMING_SERVICES = ("enrich", "score", "router")


def subscriptions() -> dict[str, tuple[Topic, ...]]:
    found = {service: tuple(subscriptions_of(service)) for service in CONSUMING_SERVICES}
    assert all(found.values()), f"a service with no subscriptions=[...]: {found}"
    return found
