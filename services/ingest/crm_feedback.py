"""CRM feedback over HTTP: from the parsed body of `POST /v1/crm/feedback` to the `crm.feedback`
records it asks for, or the reasons it is refused. Pure: no I/O, no clock.

A CRM that cannot speak Kafka reports what sales did with a lead here, with its own write key
(scope `feedback`; a website's key, scope `track`, gets 403). The body is one report, a
`CrmFeedback` (`feedback_id`, `lead_id` or `email`, `outcome`, `reason`, `owner_id`, `at` with a
time zone), or `{"batch": [report, ...]}` with 1 to `MAX_REPORTS` of them. As for tracking
calls, a batch is all or nothing: one invalid report refuses the whole request, with a reason
per problem naming each report by index, so the CRM can fix it and resend without duplicates.
Limits: `MAX_FEEDBACK_BYTES` per request (after gzip is undone) and `MAX_REPORTS` reports
(past either: 413), `MAX_REPORT_BYTES` per report (400, naming it).

Each record is what a CRM producing onto `crm.feedback` itself writes: the contract's key
(`lead_id`, else `email`) and its JSON (`shared.codec.encode`).

Resending is safe (after a 503, or an answer that never arrived): the consumers of
`crm.feedback` dedupe by `feedback_id`. score applies a feedback_id once (`score.feedback`, its
primary key), the console stores it once (`console.feedback`), and router closes the lead's
open decisions, which a repeat finds closed already. (Like any report for the lead, a repeat
sent after router opened a new decision for it, an SLA reassignment say, closes that one too:
resend soon, with the same feedback_id, not days later.)

Emails are personal data: no reason quotes a value the CRM sent (pydantic's inputs are left
out of the reasons), and nothing here logs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from services.ingest.intake import (
    KB,
    MAX_BATCH_BYTES,
    MAX_CALL_BYTES,
    Refused,
    TooLarge,
    batch_refusal,
    reason_line,
    reasons_of,
)
from services.ingest.wire import EncodedEvent
from shared.codec import encode
from shared.contracts import CrmFeedback

PATH = "/v1/crm/feedback"
MAX_FEEDBACK_BYTES = MAX_BATCH_BYTES  # 500 KB: about 2,000 reports of a few hundred bytes
MAX_REPORTS = 1_000
MAX_REPORT_BYTES = MAX_CALL_BYTES  # 32 KB, as written to the topic (a long `reason`)

_REPORTS: TypeAdapter[list[CrmFeedback]] = TypeAdapter(list[CrmFeedback])


class FeedbackBatch(BaseModel):
    """Many reports at once (all accepted, or none). Documents the body; `feedback_records`
    checks it."""

    model_config = ConfigDict(extra="forbid")

    batch: list[CrmFeedback] = Field(min_length=1, max_length=MAX_REPORTS)


def feedback_records(body: dict[str, Any]) -> list[EncodedEvent]:
    """The `crm.feedback` records a parsed body asks for, in order: one for a report, one per
    report of a batch.

    Raises `TooLarge` for a batch of more than `MAX_REPORTS` reports (413), `Refused` with
    every reason otherwise (400; up to `intake.MAX_REASONS`), naming batch items by index.
    """
    if "batch" not in body:
        try:
            report = CrmFeedback.model_validate(body)
        except ValidationError as exc:
            raise Refused(reasons_of(exc)) from None
        record = _record(report)
        if isinstance(record, str):
            raise Refused([record])
        return [record]
    others = sorted(name for name in body if name != "batch")
    if others:
        raise Refused([f"{name}: not allowed beside batch" for name in others])
    items = body["batch"]
    if not isinstance(items, list):
        raise Refused(["batch: must be a list of reports"])
    if not items:
        raise Refused(["batch: must hold at least one report"])
    if len(items) > MAX_REPORTS:
        raise TooLarge(
            [
                f"batch: {len(items):,} reports, more than {MAX_REPORTS:,} (the limit of one "
                "request): send them in several requests"
            ]
        )
    reasons: dict[int, list[str]] = {}
    objects: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            objects.append((index, item))
        else:
            reasons[index] = ["must be a JSON object (a report)"]
    reports: list[CrmFeedback] = []
    try:
        # One validation for the whole batch: a call into pydantic per report costs more.
        reports = _REPORTS.validate_python([item for _, item in objects])
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            location = error["loc"]
            position = location[0] if location and isinstance(location[0], int) else 0
            index = objects[position][0]
            reasons.setdefault(index, []).append(reason_line(location[1:], error["msg"]))
    if reasons:
        raise batch_refusal(reasons)
    records: list[EncodedEvent] = []
    for (index, _), report in zip(objects, reports, strict=True):
        record = _record(report)
        if isinstance(record, str):
            reasons[index] = [record]
        else:
            records.append(record)
    if reasons:
        raise batch_refusal(reasons)
    return records


def _record(report: CrmFeedback) -> EncodedEvent | str:
    """The report's record, or why it cannot be one."""
    value = encode(report)
    if len(value) > MAX_REPORT_BYTES:
        return f"report is {len(value):,} bytes, more than {MAX_REPORT_BYTES // KB} KB"
    # The contract's key: lead_id, else email (the contract requires one of them).
    key = report.lead_id or report.email or ""
    return EncodedEvent(key.encode(), value)
