"""CRM feedback over HTTP (services/ingest/crm_feedback.py): the `feedback` scope of a CRM's
key, from a body to `crm.feedback` records (the contract's key and value), all-or-nothing
batches with reasons by index, the limits, and the OpenAPI description."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from services.ingest.admission import Admission, Refusal
from services.ingest.api import create_app
from services.ingest.auth import Caller, _main
from services.ingest.config import WRITE_KEY_SCOPES, IngestSettings, WriteKey
from services.ingest.crm_feedback import (
    MAX_FEEDBACK_BYTES,
    MAX_REPORT_BYTES,
    MAX_REPORTS,
    PATH,
    feedback_records,
)
from services.ingest.intake import MAX_REASONS, Refused, TooLarge, json_object
from shared.codec import decode, encode
from shared.contracts import CrmFeedback

pytestmark = pytest.mark.unit

WEBSITE, CRM = "wk-website-7f3a", "wk-crm-5d21"
EMAIL = "maria.gonzalez@northwind-logistics.com"


def settings() -> IngestSettings:
    return IngestSettings(
        write_keys={
            "website": WriteKey.of(WEBSITE, source="website", scopes=["track"]),
            "salesforce": WriteKey.of(
                CRM, source="salesforce", scopes=["feedback"], limit_per_address=False
            ),
        }
    )


def report(**fields: Any) -> dict[str, Any]:
    return {
        "feedback_id": "sf-task-1",
        "lead_id": "lead-1",
        "outcome": "accepted",
        "owner_id": "rep-grace",
        "at": "2026-03-02T09:18:52Z",
    } | fields


def refusal(body: dict[str, Any]) -> list[str]:
    with pytest.raises(Refused) as refused:
        feedback_records(body)
    assert not isinstance(refused.value, TooLarge)
    return refused.value.reasons


# ---- the key ------------------------------------------------------------------------------


def test_a_crm_key_may_report_feedback_and_nothing_else() -> None:
    admission = Admission(settings())

    crm = admission.authenticate(CRM, scope="feedback", address="192.0.2.7", now=0.0)
    assert isinstance(crm, Caller)
    assert crm.key_name == "salesforce"
    for scope in ("track", "import", "admin"):
        refused = admission.authenticate(CRM, scope=scope, address="192.0.2.7", now=0.0)
        assert isinstance(refused, Refusal)
        assert refused.status == 403


def test_a_websites_key_gets_403_naming_the_feedback_scope() -> None:
    admission = Admission(settings())

    refused = admission.authenticate(WEBSITE, scope="feedback", address="192.0.2.7", now=0.0)

    assert refused == Refusal(
        403, f"write key 'website' lacks the scope 'feedback' ({WRITE_KEY_SCOPES['feedback']})"
    )
    assert WEBSITE not in refused.reason


@pytest.mark.parametrize("key", [None, "", "wk-unknown"])
def test_no_key_or_an_unknown_one_gets_401(key: str | None) -> None:
    refused = Admission(settings()).authenticate(
        key, scope="feedback", address="192.0.2.7", now=0.0
    )
    assert isinstance(refused, Refusal)
    assert refused.status == 401


def test_new_key_makes_a_crm_key_in_the_configuration_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["new-key", "salesforce", "--source", "salesforce", "--scope", "feedback"]
    assert _main([*argv, "--no-limit-per-address"]) == 0
    key_line, entry_line = capsys.readouterr().out.splitlines()
    key = key_line.rsplit(" ", 1)[1]
    entry = json.loads(entry_line.split(": ", 1)[1])
    configured = IngestSettings(write_keys=entry)

    assert configured.write_keys["salesforce"].scopes == ["feedback"]
    assert configured.write_keys["salesforce"].limit_per_address is False
    crm = Admission(configured).authenticate(key, scope="feedback", address="a", now=0.0)
    assert isinstance(crm, Caller)


# ---- records -------------------------------------------------------------------------------


def test_a_report_becomes_the_contracts_record_keyed_by_lead_id() -> None:
    (record,) = feedback_records(report(email=EMAIL, reason="good fit"))

    assert record.key == b"lead-1"
    feedback = decode(record.value, CrmFeedback)  # as score, router and the console read it
    assert feedback == CrmFeedback.model_validate(report(email=EMAIL, reason="good fit"))
    assert record.value == encode(feedback)  # the bytes a CRM producing it itself writes


def test_a_report_without_lead_id_is_keyed_by_its_email() -> None:
    (record,) = feedback_records(report(lead_id=None, email=EMAIL))
    assert record.key == EMAIL.encode()
    assert decode(record.value, CrmFeedback).lead_id is None


def test_a_batch_becomes_one_record_per_report_in_order() -> None:
    items = [
        report(feedback_id="fb-1", lead_id="lead-1", outcome="accepted"),
        report(feedback_id="fb-2", lead_id=None, email=EMAIL, outcome="disqualified"),
        report(feedback_id="fb-3", lead_id="lead-3", outcome="won", at="2026-04-17T17:42+02:00"),
    ]

    records = feedback_records({"batch": items})

    assert [r.key for r in records] == [b"lead-1", EMAIL.encode(), b"lead-3"]
    values = [decode(r.value, CrmFeedback) for r in records]
    assert [(v.feedback_id, v.outcome) for v in values] == [
        ("fb-1", "accepted"),
        ("fb-2", "disqualified"),
        ("fb-3", "won"),
    ]
    assert values[2].at.utcoffset() is not None


def test_a_resent_report_is_the_same_record() -> None:
    """Resending after a 503 is safe: the same feedback_id, key and bytes (consumers dedupe)."""
    assert feedback_records(report()) == feedback_records(report())


# ---- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"lead_id": None}, "feedback needs lead_id or email"),
        ({"lead_id": "", "email": ""}, "feedback needs lead_id or email"),
        ({"outcome": "maybe"}, "outcome: Input should be 'accepted', 'rejected'"),
        ({"at": "2026-03-02T09:18:52"}, "at: timestamp must carry a time zone"),
        ({"at": "yesterday"}, "at: Input should be a valid datetime"),
        ({"feedback_id": ""}, "feedback_id: String should have at least 1 character"),
        ({"stage": "sql"}, "stage: Extra inputs are not permitted"),
        ({"schema_version": 2}, "schema_version: Input should be 1"),
    ],
)
def test_an_invalid_report_is_refused_with_the_reason(fields: dict[str, Any], reason: str) -> None:
    body = report(**fields)
    if "lead_id" in fields and fields["lead_id"] is None:
        del body["lead_id"]
    reasons = refusal(body)
    assert any(line.startswith(reason) for line in reasons), reasons


def test_a_missing_field_is_named() -> None:
    body = report()
    del body["outcome"], body["at"]
    assert refusal(body) == ["outcome: Field required", "at: Field required"]


def test_a_batch_with_an_invalid_report_is_refused_whole_naming_each_by_index() -> None:
    items = [
        report(feedback_id="fb-0"),
        report(feedback_id="fb-1", at="2026-03-02T09:18:52"),
        "accepted",
        report(feedback_id="fb-3", lead_id=None, email=None),
        report(feedback_id="fb-4", outcome="closed"),
    ]

    reasons = refusal({"batch": items})

    assert [line.split(":", 1)[0] for line in reasons] == [
        "batch[1]",
        "batch[2]",
        "batch[3]",
        "batch[4]",
    ]
    assert reasons[0] == (
        "batch[1]: at: timestamp must carry a time zone (ISO-8601 with offset or Z)"
    )
    assert reasons[1] == "batch[2]: must be a JSON object (a report)"
    assert reasons[2] == "batch[3]: feedback needs lead_id or email"
    assert reasons[3].startswith("batch[4]: outcome: Input should be 'accepted'")


def test_no_reason_repeats_an_email_it_was_sent() -> None:
    """Emails are personal data: the answers name fields, never the values sent."""
    reasons = refusal(
        {"batch": [report(email=EMAIL, outcome="maybe"), report(email=EMAIL, at="soon")]}
    )
    assert reasons
    assert not any(EMAIL in line or "maria" in line for line in reasons), reasons


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"batch": []}, "batch: must hold at least one report"),
        ({"batch": {"feedback_id": "x"}}, "batch: must be a list of reports"),
        ({"batch": [report()], "sentAt": "2026-03-02T09:18:52Z"}, "sentAt: not allowed beside"),
    ],
)
def test_a_malformed_batch_is_refused(body: dict[str, Any], reason: str) -> None:
    assert any(line.startswith(reason) for line in refusal(body))


def test_reasons_are_capped() -> None:
    reasons = refusal({"batch": [report(outcome="maybe")] * (MAX_REASONS + 10)})
    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1] == "... and 10 more"


def test_more_reports_than_the_limit_are_too_large() -> None:
    assert feedback_records({"batch": [report()] * MAX_REPORTS})
    with pytest.raises(TooLarge, match=f"more than {MAX_REPORTS:,}"):
        feedback_records({"batch": [report()] * (MAX_REPORTS + 1)})


def test_a_report_larger_than_its_limit_is_refused_by_index() -> None:
    long = report(reason="x" * MAX_REPORT_BYTES)
    assert refusal({"batch": [report(), long]}) == [
        f"batch[1]: report is {len(encode(CrmFeedback.model_validate(long))):,} bytes, "
        f"more than {MAX_REPORT_BYTES // 1024} KB"
    ]


def test_the_limits_hold_a_full_batch_of_ordinary_reports() -> None:
    batch = {"batch": [report(feedback_id=f"fb-{n:05d}") for n in range(MAX_REPORTS)]}
    body = orjson.dumps(batch)
    assert len(body) < MAX_FEEDBACK_BYTES
    assert len(feedback_records(json_object(body))) == MAX_REPORTS


# ---- the OpenAPI document ------------------------------------------------------------------


def test_the_openapi_document_describes_the_body_and_answers() -> None:
    document = create_app(settings()).openapi()

    operation = document["paths"][PATH]["post"]
    content = operation["requestBody"]["content"]["application/json"]
    assert content["schema"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/CrmFeedback"},
            {"$ref": "#/components/schemas/FeedbackBatch"},
        ]
    }
    schemas = document["components"]["schemas"]
    assert {"feedback_id", "lead_id", "email", "outcome", "at"} <= set(
        schemas["CrmFeedback"]["properties"]
    )
    assert schemas["FeedbackBatch"]["properties"]["batch"]["maxItems"] == MAX_REPORTS
    for example in content["examples"].values():  # every example is accepted as documented
        assert feedback_records(example["value"])
    assert {"200", "400", "401", "403", "408", "413", "429", "503"} <= set(operation["responses"])
    assert "`feedback` scope" in operation["responses"]["403"]["description"]
    assert operation["security"] == [{"writeKey": []}]
    # The tracking endpoints keep their own answers.
    assert (
        "`track` scope"
        in (document["paths"]["/v1/track"]["post"]["responses"]["403"]["description"])
    )
