"""An example CRM connector: consume leadflow's routing decisions with a standard Kafka client.

It uses confluent-kafka (librdkafka, the client most CRM connectors build on) and nothing from
leadflow: messages are plain JSON, checked against the published JSON Schemas
(shared/contracts/schemas/<topic>.schema.json). Run it against a local stack:

    python examples/crm_consumer.py --bootstrap 127.0.0.1:9092

What a real connector must do, shown here:
- Read the three routing topics together: `routing.sdr`, `routing.nurture` (decisions) and
  `routing.withdrawals` (a decision that no longer holds). A lead has at most one current
  route; every message about it carries the lead's next `sequence`, across the three topics.
  Messages of different topics arrive in any order: apply a lead's message only when its
  sequence is above the last one applied for that lead (`CurrentRoutes`), and ignore the others
  (older, or delivered again). A CRM keeps that number with the lead.
- Delivery is at-least-once: upsert by `decision_id` / `withdrawal_id`.
- A nurture decision is sent once its lead settled (the routing's `nurture.settle`, 30 s by
  default): a visitor who asks for a demo right after identifying gets one SDR decision and no
  nurture enrolment. An SDR decision is never held.
- Low latency: `fetch.wait.max.ms` 20 (librdkafka waits up to 500 ms for data by default, which
  adds hundreds of ms to every decision when traffic is light).
- Commit offsets only after the CRM write succeeded (enable.auto.commit=false, commit after).
- Report back on `crm.feedback` (accepted, rejected, ...) so the router stops the SLA timer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException
from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[1] / "shared" / "contracts" / "schemas"
ROUTING_TOPICS = ("routing.sdr", "routing.nurture", "routing.withdrawals")
LOW_LATENCY = {"fetch.wait.max.ms": 20}


class CurrentRoutes:
    """What a CRM keeps per lead: the last sequence applied and the lead's current route (a
    decision, or None once withdrawn). In a real CRM, two fields on the lead record."""

    def __init__(self) -> None:
        self.applied: dict[str, int] = {}
        self.current: dict[str, dict[str, Any] | None] = {}

    def apply(self, topic: str, message: dict[str, Any]) -> bool:
        """Apply a routing message; False (nothing changed) for one the lead has moved past."""
        lead, sequence = message["lead_id"], message.get("sequence")
        if sequence is not None:  # decisions made before sequences existed have none
            if sequence <= self.applied.get(lead, 0):
                return False
            self.applied[lead] = sequence
        if topic.endswith("routing.withdrawals"):
            held = self.current.get(lead)
            if held is not None and held["decision_id"] == message["decision_id"]:
                self.current[lead] = None
        else:
            self.current[lead] = message
        return True


def consume_routing(
    *,
    bootstrap: str,
    topics: Sequence[str],
    group_id: str,
    on_message: Callable[[str, dict[str, Any]], None],
    on_invalid: Callable[[bytes, str], None],
    should_stop: Callable[[], bool],
) -> None:
    """Poll `topics` (routing topics, possibly with a deployment's prefix) as consumer group
    `group_id`; hand each valid message to `on_message` with its topic's unprefixed name and
    each invalid one (with the reason) to `on_invalid`; commit after each message."""
    names = {topic: next(n for n in ROUTING_TOPICS if topic.endswith(n)) for topic in topics}
    validators = {
        name: Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
        for name in set(names.values())
    }
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            **LOW_LATENCY,
        }
    )
    consumer.subscribe(list(topics))
    try:
        while not should_stop():
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            name = names[message.topic() or ""]
            raw = message.value() or b""
            try:
                value = json.loads(raw)
                errors = [e.message for e in validators[name].iter_errors(value)]
            except ValueError as exc:
                errors = [f"not JSON: {exc}"]
            if errors:
                on_invalid(raw, "; ".join(errors))
            else:
                on_message(name, value)
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    # In a cluster a connector's group must be named crm-<anything> (its KafkaUser's ACLs).
    parser.add_argument("--group", default="crm-example")
    args = parser.parse_args()
    routes = CurrentRoutes()

    def show(topic: str, message: dict[str, Any]) -> None:
        if not routes.apply(topic, message):
            return  # the lead has moved past it
        lead, sequence = message["lead_id"], message.get("sequence")
        if topic == "routing.withdrawals":
            print(f"#{sequence} {lead}: {message['route']} decision withdrawn: {message['reason']}")
            return
        target = message["owner"] or {"name": message["queue"] or message["track"]}
        print(f"#{sequence} {lead}: {message['route']} -> {target['name']} ({message['strategy']})")

    with contextlib.suppress(KeyboardInterrupt):
        consume_routing(
            bootstrap=args.bootstrap,
            topics=ROUTING_TOPICS,
            group_id=args.group,
            on_message=show,
            on_invalid=lambda raw, reason: print(f"invalid message ({reason}): {raw[:200]!r}"),
            should_stop=lambda: False,
        )


if __name__ == "__main__":
    main()
