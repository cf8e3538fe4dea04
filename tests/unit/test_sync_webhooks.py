"""A delivery request as a receiver checks it: Standard Webhooks signature, idempotency key,
body; and which destination and lane an event goes to."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.sync.destinations import Destination, DestinationConfig
from services.sync.events import event_of, fan_out, lane_of
from services.sync.webhooks import Envelope, batch_id, webhook_request
from shared.contracts import ErasureNotice, RoutingWithdrawal
from tests.unit.builders import lifecycle_change

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime.now(UTC).replace(microsecond=0)


def envelope(event_id: str = "d-1", data: object = None) -> Envelope:
    return Envelope(event_id, "routing.decision", NOW, data or {"lead_id": "lead-1"})


def signed_now() -> datetime:
    """When a request is signed: now (the library refuses a signature older than 5 minutes,
    and a module's import time may be long past when a test runs in a whole suite)."""
    return datetime.now(UTC).replace(microsecond=0)


def test_a_single_event_verifies_with_the_standard_webhooks_library() -> None:
    signed = signed_now()
    request = webhook_request([envelope()], signer=Webhook(SECRET), now=signed, batched=False,
                              extra_headers={"X-Source": "leadflow"})  # fmt: skip
    received = Webhook(SECRET).verify(request.body, request.headers)
    assert received == {
        "id": "d-1",
        "type": "routing.decision",
        "timestamp": NOW.isoformat(),
        "data": {"lead_id": "lead-1"},
    }
    assert request.headers["webhook-id"] == request.headers["idempotency-key"] == "d-1"
    assert request.headers["webhook-timestamp"] == str(int(signed.timestamp()))
    assert request.headers["X-Source"] == "leadflow"


def test_a_tampered_body_or_another_secret_fails_verification() -> None:
    request = webhook_request([envelope()], signer=Webhook(SECRET), now=signed_now(),
                              batched=False)  # fmt: skip
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"lead-1", b"lead-2"), request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(request.body, request.headers)


def test_a_batch_carries_each_events_id_and_a_deterministic_id_of_its_own() -> None:
    events = [envelope("d-1"), envelope("w-2")]
    signed = signed_now()
    first = webhook_request(events, signer=Webhook(SECRET), now=signed, batched=True)
    again = webhook_request(events, signer=Webhook(SECRET), now=signed + timedelta(seconds=30),
                            batched=True)  # fmt: skip
    body = Webhook(SECRET).verify(first.body, first.headers)
    assert body["type"] == "batch"
    assert [event["id"] for event in body["data"]] == ["d-1", "w-2"]
    assert first.webhook_id == again.webhook_id == batch_id(["d-1", "w-2"])
    assert first.headers["idempotency-key"] == first.webhook_id
    assert first.headers["webhook-signature"] != again.headers["webhook-signature"]
    assert batch_id(["w-2", "d-1"]) != first.webhook_id


def test_events_carry_their_idempotency_keys_and_times() -> None:
    change = lifecycle_change()
    event = event_of(change)
    assert (event.kind, event.event_id, event.stage, event.sequence) == (
        "lifecycle", change.transition_id, "mql", None)  # fmt: skip
    assert orjson.loads(orjson.dumps(event.data))["lead_id"] == "lead-1"
    withdrawal = RoutingWithdrawal(withdrawal_id="w-1", decision_id="d-1", lead_id="lead-1",
                                   route="nurture", cause="stage_changed", reason="sales took it",
                                   sequence=4, withdrawn_at=NOW)  # fmt: skip
    assert (event_of(withdrawal).event_id, event_of(withdrawal).sequence) == ("w-1", 4)
    notice = ErasureNotice(request_id="r-1", lead_ids=["lead-9", "lead-3"], requested_at=NOW,
                           erased_at=NOW)  # fmt: skip
    assert (event_of(notice).event_id, event_of(notice).lead_id) == ("r-1", "lead-9")


def destination(name: str, **fields: object) -> Destination:
    config = DestinationConfig.model_validate(
        {"url": "https://crm.example.com/", "secret_env": "X", **fields}
    )
    return Destination(name=name, config=config, secret=SecretStr(SECRET))


def test_each_destination_gets_the_events_its_filters_let_through() -> None:
    sdr_only = destination("sdr", events=["decisions", "withdrawals"], routes=["sdr"])
    mqls = destination("mqls", events=["lifecycle"], stages=["mql"], concurrency=8)
    everything = destination("all", events=["decisions", "withdrawals", "lifecycle", "erasures"])
    change = event_of(lifecycle_change())
    sql = event_of(lifecycle_change(to_stage="sql", from_stage="mql", transition_id="t-2"))
    nurture_withdrawn = event_of(
        RoutingWithdrawal(
            withdrawal_id="w-1",
            decision_id="d-1",
            lead_id="lead-1",
            route="nurture",
            cause="stage_changed",
            reason="sales took it",
            sequence=2,
            withdrawn_at=NOW,
        )
    )
    rows = fan_out([change, sql, nurture_withdrawn], [sdr_only, mqls, everything])
    assert [(row.destination, row.event.event_id) for row in rows] == [
        ("mqls", change.event_id),
        ("all", change.event_id),
        ("all", "t-2"),
        ("all", "w-1"),
    ]
    assert rows[0].lane == lane_of("lead-1", 8)
    assert rows[1].lane == lane_of("lead-1", 4)


def test_a_leads_lane_is_stable_and_leads_spread_over_the_lanes() -> None:
    assert lane_of("lead-1", 4) == lane_of("lead-1", 4)
    assert lane_of("anything", 1) == 0
    spread = Counter(lane_of(f"lead-{n}", 4) for n in range(4000))
    assert set(spread) == {0, 1, 2, 3}
    assert min(spread.values()) > 850
    # fixed, whatever the process (not Python's salted hash): lanes survive restarts
    assert [lane_of(f"lead-{n}", 16) for n in range(4)] == [7, 15, 8, 13]


def test_an_erasure_notice_follows_every_lead_it_names_in_each_lane() -> None:
    """Queued behind each of its leads (lane FIFO): whatever of a merged lead was on its way
    reaches the CRM before a notice that erases it. One copy per lane, each with its own id."""
    leads = [f"lead-{n}" for n in range(6)]
    notice = event_of(
        ErasureNotice(request_id="r-1", lead_ids=leads, requested_at=NOW, erased_at=NOW)
    )
    rows = fan_out([notice], [destination("all", events=["erasures"], concurrency=4)])

    lanes = sorted({lane_of(lead, 4) for lead in leads})
    assert sorted(row.lane for row in rows) == lanes
    assert len(lanes) > 1, "the example must spread over lanes to test anything"
    ids = {row.event.event_id for row in rows}
    assert len(ids) == len(rows)
    assert "r-1" in ids
    assert all(row.event.data["lead_ids"] == leads for row in rows)
