"""Property-based: whatever bytes arrive, the import core either refuses the file as a whole
(`BadUpload`, a 400) or reads it with a consistent report; it never fails any other way (a 500)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.lead_import.reading import BadUpload
from services.ingest.lead_import.report import ImportReport
from services.ingest.lead_import.spool import LeadSpool
from services.ingest.lead_import.upload import FileFormat, LeadListUpload
from shared.codec import decode
from shared.contracts import RawEvent

NOW = datetime(2026, 11, 23, tzinfo=UTC)
CSV_ALPHABET = st.sampled_from([*'ab@.x,;\t|"\n\r =+-', "é", "\ufeff", "\x00"])
HEADERS = st.sampled_from(["Email,Name\n", "E-mail;Phone;Country\r\n", "email\n", "Name\n", ""])


def import_outcome(body: bytes, *, file_format: FileFormat, chunk: int) -> str | None:
    """The refusal's reason, or None when the file was read (its report checked)."""
    report = ImportReport(import_id="p", list_name="prop")
    upload = LeadListUpload(report=report, file_format=file_format, spool=LeadSpool(None))
    try:
        for i in range(0, len(body), chunk):
            upload.feed(body[i : i + chunk])
        upload.finish()
        events: list[RawEvent] = []
        while batch := upload.next_events(50, source="s", received_at=NOW):
            events.extend(decode(record.value, RawEvent) for record in batch)
    except BadUpload as refused:
        return str(refused)
    finally:
        upload.close()
    assert report.rows_read == report.accepted + report.rejected
    assert report.leads == report.accepted - report.duplicates_merged == len(events)
    assert len({event.message_id for event in events}) == len(events)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    header=HEADERS,
    text=st.text(CSV_ALPHABET, max_size=300),
    chunk=st.integers(1, 64),
    file_format=st.sampled_from(["csv", "ndjson"]),
)
def test_csv_like_text_never_fails_unexpectedly(
    header: str, text: str, chunk: int, file_format: FileFormat
) -> None:
    refusal = import_outcome((header + text).encode(), file_format=file_format, chunk=chunk)
    assert refusal is None or refusal.strip()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=300),
    chunk=st.integers(1, 64),
    file_format=st.sampled_from(["csv", "ndjson"]),
)
def test_arbitrary_bytes_never_fail_unexpectedly(
    body: bytes, chunk: int, file_format: FileFormat
) -> None:
    refusal = import_outcome(b"Email,Name\n" + body, file_format=file_format, chunk=chunk)
    assert refusal is None or refusal.strip()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    lines=st.lists(
        st.dictionaries(
            st.sampled_from(["email", "Email", "name", "phone", "country", "x", "company"]),
            st.one_of(
                st.text(max_size=20),
                st.integers(),
                st.booleans(),
                st.none(),
                st.floats(allow_nan=False),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
                st.sampled_from(["a@b.io", "A@B.IO ", "+44 20 7183 8750", "UK", "=1+1"]),
            ),
            max_size=5,
        ),
        max_size=12,
    ),
    chunk=st.integers(1, 64),
)
def test_any_json_objects_never_fail_unexpectedly(
    lines: list[dict[str, object]], chunk: int
) -> None:
    body = "\n".join(json.dumps(line) for line in lines).encode()
    refusal = import_outcome(body, file_format="ndjson", chunk=chunk)
    assert refusal is None or refusal.strip()
