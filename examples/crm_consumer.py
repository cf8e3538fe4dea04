"""An example CRM connector: consume leadflow's routing decisions with a standard Kafka client.

It uses confluent-kafka (librdkafka, the client most CRM connectors build on) and nothing from
leadflow: decisions are plain JSON, checked against the published JSON Schema
(shared/contracts/schemas/routing.sdr.schema.json). Run it against a local stack:

    python examples/crm_consumer.py --bootstrap 127.0.0.1:9092 --topic routing.sdr

What a real connector must do, shown here:
- Delivery is at-least-once: upsert by `decision_id` (a redelivered decision changes nothing).
- A reassignment after an SLA breach is a new decision whose `supersedes` names the one it
  replaces: the newest decision of a lead is the current owner (or queue).
- Commit offsets only after the CRM write succeeded (enable.auto.commit=false, commit after).
- Report back on `crm.feedback` (accepted, rejected, ...) so the router stops the SLA timer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException
from jsonschema import Draft202012Validator

SCHEMA = (
    Path(__file__).resolve().parents[1]
    / "shared"
    / "contracts"
    / "schemas"
    / "routing.sdr.schema.json"
)


def consume_decisions(
    *,
    bootstrap: str,
    topic: str,
    group_id: str,
    on_decision: Callable[[dict[str, Any]], None],
    on_invalid: Callable[[bytes, str], None],
    should_stop: Callable[[], bool],
) -> None:
    """Poll `topic` as consumer group `group_id`; hand each valid decision to `on_decision`
    and each invalid one (with the reason) to `on_invalid`; commit after each message."""
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    try:
        while not should_stop():
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            raw = message.value() or b""
            try:
                decision = json.loads(raw)
                errors = [e.message for e in validator.iter_errors(decision)]
            except ValueError as exc:
                errors = [f"not JSON: {exc}"]
            if errors:
                on_invalid(raw, "; ".join(errors))
            else:
                on_decision(decision)
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="routing.sdr")
    # In a cluster a connector's group must be named crm-<anything> (its KafkaUser's ACLs).
    parser.add_argument("--group", default="crm-example")
    args = parser.parse_args()

    def show(decision: dict[str, Any]) -> None:
        target = decision["owner"]["name"] if decision["owner"] else f"queue {decision['queue']}"
        print(
            f"{decision['decided_at']}  {decision['email']} -> {target}  ({decision['strategy']})"
        )

    with contextlib.suppress(KeyboardInterrupt):
        consume_decisions(
            bootstrap=args.bootstrap,
            topic=args.topic,
            group_id=args.group,
            on_decision=show,
            on_invalid=lambda raw, reason: print(f"invalid decision ({reason}): {raw[:200]!r}"),
            should_stop=lambda: False,
        )


if __name__ == "__main__":
    main()
