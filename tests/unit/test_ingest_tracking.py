"""Segment calls as ingest accepts them: clock-skew correction, stamping, and write keys."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.ingest.auth import WriteKeys, key_from_basic_auth
from services.ingest.config import WriteKey
from services.ingest.tracking import IdentifyCall, TrackCall, TrackingCall, raw_event_fields
from services.ingest.wire import encode_fields
from shared.codec import decode
from shared.contracts import RawEvent, corrected_timestamp
from shared.secret_hashes import secret_hash
from tests.unit.builders import NOW

pytestmark = pytest.mark.unit


def at(seconds: float) -> datetime:
    """`NOW` shifted by `seconds`."""
    return NOW + timedelta(seconds=seconds)


def identify_call(**fields: Any) -> IdentifyCall:
    """An identify call as a client posts it (wire names), from an anonymous browser."""
    return IdentifyCall.model_validate({"anonymousId": "anon-1", **fields})


def track_call(**fields: Any) -> TrackCall:
    """A `Demo Requested` track call as a client posts it (wire names)."""
    return TrackCall.model_validate({"anonymousId": "anon-1", "event": "Demo Requested", **fields})


# ---- corrected_timestamp ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received_at", "sent_at", "original", "expected"),
    [
        pytest.param(at(0), at(-2), at(-5), at(-3), id="clock-right-sent-3s-after-event"),
        pytest.param(at(0), at(3600), at(3590), at(-10), id="clock-1h-fast"),
        pytest.param(at(0), at(-86400), at(-86430), at(-30), id="clock-1d-slow"),
        pytest.param(at(0), at(-1), at(-1), at(0), id="sent-as-it-happened"),
        pytest.param(at(0), None, at(-42), at(-42), id="no-sentAt-uses-timestamp-as-sent"),
        pytest.param(at(0), at(-5), None, at(0), id="no-timestamp-happened-on-arrival"),
        pytest.param(at(0), None, None, at(0), id="neither"),
    ],
)
def test_corrected_timestamp(
    received_at: datetime, sent_at: datetime | None, original: datetime | None, expected: datetime
) -> None:
    corrected = corrected_timestamp(received_at=received_at, sent_at=sent_at, original=original)

    assert corrected == expected


def test_skew_correction_holds_when_the_client_writes_another_time_zone() -> None:
    berlin = timezone(timedelta(hours=1))
    sent_at = at(-1).astimezone(berlin)

    corrected = corrected_timestamp(
        received_at=NOW, sent_at=sent_at, original=sent_at - timedelta(seconds=4)
    )

    assert corrected == at(-4)


# ---- raw_event_fields -------------------------------------------------------------------------


def to_raw_event(call: TrackingCall, *, source: str, received_at: datetime) -> RawEvent:
    """The call's `events.raw` value as the topic's consumers read it."""
    fields = raw_event_fields(call, source=source, received_at=received_at)
    return decode(encode_fields(fields).value, RawEvent)


def test_a_call_is_stamped_with_source_arrival_and_corrected_time() -> None:
    call = track_call(timestamp="2026-03-02T09:15:30Z", sentAt="2026-03-02T09:15:32Z")

    raw = to_raw_event(call, source="website", received_at=NOW)

    assert raw.source == "website"
    assert raw.received_at == NOW
    assert raw.timestamp == at(-2)
    assert raw.original_timestamp == at(-11)
    assert raw.sent_at == at(-9)


def test_a_call_without_client_times_happened_on_arrival() -> None:
    raw = to_raw_event(track_call(), source="website", received_at=NOW)

    assert raw.timestamp == NOW
    assert raw.original_timestamp is None
    assert raw.sent_at is None


def test_the_client_message_id_is_kept() -> None:
    raw = to_raw_event(track_call(messageId="ajs-next-42"), source="website", received_at=NOW)

    assert raw.message_id == "ajs-next-42"


@pytest.mark.parametrize("message_id", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_missing_message_id_is_derived_from_the_call(message_id: str | None) -> None:
    # A resend (another receivedAt) gets the same one: enrich drops it as a repeat.
    fields = {} if message_id is None else {"messageId": message_id}

    first = to_raw_event(track_call(**fields), source="website", received_at=NOW)
    second = to_raw_event(track_call(**fields), source="website", received_at=at(10))

    assert first.message_id.startswith("derived-")
    assert first.message_id == second.message_id


@pytest.mark.parametrize(
    ("context_traits", "traits", "expected"),
    [
        pytest.param(
            {"email": "jonas.weber@gmail.com", "name": "Jonas Weber"},
            {},
            {"email": "jonas.weber@gmail.com", "name": "Jonas Weber"},
            id="rudder-context-traits-only",
        ),
        pytest.param(
            {"email": "old@northwind-logistics.com", "title": "Manager"},
            {"email": "maria.gonzalez@northwind-logistics.com"},
            {"email": "maria.gonzalez@northwind-logistics.com", "title": "Manager"},
            id="explicit-traits-win",
        ),
        pytest.param(
            None,
            {"email": "maria.gonzalez@northwind-logistics.com"},
            {"email": "maria.gonzalez@northwind-logistics.com"},
            id="segment-traits-only",
        ),
        pytest.param(
            "email=x@y.com", {"plan": "pro"}, {"plan": "pro"}, id="context-traits-not-an-object"
        ),
    ],
)
def test_identify_traits_merge_context_traits(
    context_traits: Any, traits: dict[str, Any], expected: dict[str, Any]
) -> None:
    context = {} if context_traits is None else {"traits": context_traits}
    call = identify_call(userId="usr-1", traits=traits, context=context)

    raw = to_raw_event(call, source="website", received_at=NOW)

    assert raw.traits == expected
    assert raw.context == context


def test_a_track_call_keeps_event_and_properties_and_takes_no_traits() -> None:
    call = track_call(
        properties={"path": "/demo", "team_size": "201-1000"},
        context={"traits": {"email": "maria.gonzalez@northwind-logistics.com"}},
    )

    raw = to_raw_event(call, source="website", received_at=NOW)

    assert (raw.type, raw.event) == ("track", "Demo Requested")
    assert raw.properties == {"path": "/demo", "team_size": "201-1000"}
    assert raw.traits == {}


@pytest.mark.parametrize(
    ("fields", "user_id", "anonymous_id"),
    [
        pytest.param({"userId": 20931}, "20931", "anon-1", id="integer-userId"),
        pytest.param({"anonymousId": 987654321}, None, "987654321", id="integer-anonymousId"),
        pytest.param({"userId": "  usr-7  "}, "usr-7", "anon-1", id="padded-userId"),
        pytest.param({"userId": ""}, None, "anon-1", id="empty-userId-is-absent"),
    ],
)
def test_ids_are_text(fields: dict[str, Any], user_id: str | None, anonymous_id: str) -> None:
    raw = to_raw_event(identify_call(**fields), source="website", received_at=NOW)

    assert raw.user_id == user_id
    assert raw.anonymous_id == anonymous_id


def test_a_boolean_is_not_an_id() -> None:
    with pytest.raises(ValidationError, match="userId"):
        identify_call(userId=True)


def test_naive_client_times_are_taken_as_utc() -> None:
    call = track_call(timestamp="2026-03-02T09:15:30", sentAt="2026-03-02T09:15:32.5")

    raw = to_raw_event(call, source="website", received_at=NOW)

    assert raw.original_timestamp == at(-11)
    assert raw.sent_at == at(-8.5)
    assert raw.timestamp == at(-2.5)


def test_client_offsets_are_kept() -> None:
    call = track_call(timestamp="2026-03-02T10:15:30+01:00")

    raw = to_raw_event(call, source="website", received_at=NOW)

    assert raw.original_timestamp == at(-11)
    assert raw.timestamp.utcoffset() == timedelta(hours=1)


def test_unknown_top_level_fields_are_dropped() -> None:
    call = track_call(channel="server", _metadata={"bundled": ["Segment.io"]}, writeKey="k")

    raw = to_raw_event(call, source="website", received_at=NOW)

    assert raw.integrations == {}
    assert "channel" not in raw.model_dump(by_alias=True)


def test_the_partition_key_is_the_anonymous_id_else_the_user_id() -> None:
    both = to_raw_event(track_call(userId="usr-1"), source="website", received_at=NOW)
    user_only = to_raw_event(
        TrackCall.model_validate({"userId": "usr-1", "event": "Trial Started"}),
        source="website",
        received_at=NOW,
    )

    assert both.partition_key == "anon-1"
    assert user_only.partition_key == "usr-1"


@pytest.mark.parametrize(
    ("call_type", "body", "complaint"),
    [
        pytest.param(
            IdentifyCall,
            {"traits": {"email": "a@b.com"}},
            "userId or anonymousId",
            id="identify-no-ids",
        ),
        pytest.param(
            IdentifyCall,
            {"userId": " ", "anonymousId": ""},
            "userId or anonymousId",
            id="identify-blank-ids",
        ),
        pytest.param(
            TrackCall,
            {"userId": None, "event": "Demo Requested"},
            "userId or anonymousId",
            id="track-no-ids",
        ),
        pytest.param(
            TrackCall, {"anonymousId": "anon-1", "event": ""}, "event", id="track-empty-event"
        ),
        pytest.param(TrackCall, {"anonymousId": "anon-1"}, "event", id="track-no-event"),
        pytest.param(
            TrackCall, {"anonymousId": "a" * 201, "event": "X"}, "anonymousId", id="id-too-long"
        ),
        pytest.param(
            IdentifyCall,
            {"anonymousId": "anon-1", "timestamp": "yesterday"},
            "timestamp",
            id="bad-timestamp",
        ),
    ],
)
def test_invalid_calls_are_refused(
    call_type: type[BaseModel], body: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        call_type.model_validate(body)


# ---- write keys -------------------------------------------------------------------------------


def basic(credentials: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(credentials).decode()}"


@pytest.mark.parametrize(
    ("header", "key"),
    [
        pytest.param(basic(b"local-dev-key:"), "local-dev-key", id="segment-style"),
        pytest.param(basic(b"local-dev-key:secret"), "local-dev-key", id="with-password"),
        pytest.param(basic(b"local-dev-key"), "local-dev-key", id="no-colon"),
        pytest.param(
            basic(b"local-dev-key:", scheme="basic"), "local-dev-key", id="lower-case-scheme"
        ),
        pytest.param(basic(b"local-dev-key:") + "  ", "local-dev-key", id="trailing-space"),
        pytest.param(None, None, id="no-header"),
        pytest.param("", None, id="empty-header"),
        pytest.param("Basic", None, id="scheme-only"),
        pytest.param("Basic !!not-base64!!", None, id="garbled-base64"),
        pytest.param(basic(b"\xff\xfe:"), None, id="not-utf8"),
        pytest.param(basic(b"local-dev-key:", scheme="Bearer"), None, id="wrong-scheme"),
        pytest.param(basic(b":secret"), None, id="empty-user"),
        pytest.param(basic(b":"), None, id="colon-only"),
    ],
)
def test_key_from_basic_auth(header: str | None, key: str | None) -> None:
    assert key_from_basic_auth(header) == key


WRITE_KEYS = WriteKeys(
    {
        "website": WriteKey.of("local-dev-key", source="website", scopes=["track"]),
        "careers": WriteKey.of("wk_careers_9f3a", source="careers-site", scopes=["track"]),
    }
)


@pytest.mark.parametrize(
    ("key", "source"),
    [
        pytest.param("local-dev-key", "website", id="known"),
        pytest.param("wk_careers_9f3a", "careers-site", id="another-known"),
        pytest.param("local-dev-key ", None, id="trailing-space"),
        pytest.param("LOCAL-DEV-KEY", None, id="case-matters"),
        pytest.param("local", None, id="prefix-of-a-key"),
        pytest.param("clé-inconnue", None, id="unknown-non-ascii"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
    ],
)
def test_a_write_key_is_found_by_the_key_itself(key: str | None, source: str | None) -> None:
    caller = WRITE_KEYS.find(key)
    assert (caller.source if caller else None) == source


def test_the_configured_hash_is_not_a_key() -> None:
    assert WRITE_KEYS.find(secret_hash("local-dev-key")) is None
    assert WriteKeys({}).find("local-dev-key") is None
