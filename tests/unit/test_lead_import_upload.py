"""A whole list through the import core (in-memory spool): report counts, merging of
duplicates, rejections and warnings by spreadsheet row number, refusals, and the identify
events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.ingest.lead_import.reading import BadUpload
from services.ingest.lead_import.report import (
    MAX_LISTED_REJECTIONS,
    MAX_LISTED_WARNINGS,
    ImportReport,
)
from services.ingest.lead_import.spool import LeadSpool
from services.ingest.lead_import.upload import FileFormat, LeadListUpload
from shared.codec import decode, encode
from shared.contracts import RawEvent

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def run_import(
    body: bytes,
    *,
    file_format: FileFormat = "csv",
    mapping: dict[str, str | None] | None = None,
    chunk: int = 7,
) -> tuple[ImportReport, list[RawEvent]]:
    report = ImportReport(import_id="imp-1", list_name="webinar-q4")
    upload = LeadListUpload(
        report=report, file_format=file_format, mapping=mapping, spool=LeadSpool(None)
    )
    try:
        for i in range(0, len(body), chunk):
            upload.feed(body[i : i + chunk])
        upload.finish()
        events: list[RawEvent] = []
        while batch := upload.next_events(2, source="partner-key", received_at=NOW):
            for record in batch:  # as the topic's consumers read it, keyed as it says
                event = decode(record.value, RawEvent)
                assert record.key == event.partition_key.encode()
                assert record.value == encode(event)  # the contract's own bytes
                events.append(event)
    finally:
        upload.close()
    return report, events


LIST = (
    "\ufeffE-mail;Full Name;Organization;Mobile;Country;Lead Source\r\n"
    "Ada@Example.com ; Ada  Lovelace;Analytical;020 7183 8750;UK;Webinar\r\n"
    "bob@;Bob;X;;;\r\n"
    "\r\n"
    'ada@example.com;Ada L;Other;;;"late\r\nnote"\r\n'
    "grace@navy.mil;Grace Hopper;;;USA;\r\n"
    "ADA@EXAMPLE.COM;;;;;\r\n"
    "x@y.io;X;;12;DE;\r\n"
    'grace@navy.mil;;US Navy;+1 650 253 0000;;=HYPERLINK("http://evil")\r\n'
).encode()


def test_a_list_is_read_merged_and_reported() -> None:
    report, events = run_import(LIST)
    assert report.as_json() | {"state": None} == {
        "importId": "imp-1",
        "list": "webinar-q4",
        "state": None,
        "bytesReceived": len(LIST),
        "rowsRead": 7,
        "blankRows": 1,
        "accepted": 6,
        "rejected": 1,
        "warned": 1,
        "duplicatesMerged": 3,
        "leads": 3,
        "published": 0,
        "rejections": [
            "row 3: invalid email 'bob@': There must be something after the @-sign",
        ],
        "rejectionsNotListed": 0,
        # Kept without the phone: the email still names the lead.
        "warnings": ["row 8: phone '12' dropped: not a valid number"],
        "warningsNotListed": 0,
        "columns": {
            "E-mail": "email",
            "Full Name": "name",
            "Organization": "company",
            "Mobile": "phone",
            "Country": "country",
            "Lead Source": "extra trait 'Lead Source'",
        },
        "ignoredColumns": [],
        "error": None,
    }
    ada, grace, x = events
    # First non-empty value wins; later duplicates only fill what is missing.
    assert ada.traits == {
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "name": "Ada Lovelace",
        "company": "Analytical",
        "phone": "+442071838750",
        "country": "GB",
        "Lead Source": "Webinar",
    }
    assert grace.traits == {
        "email": "grace@navy.mil",
        "firstName": "Grace",
        "lastName": "Hopper",
        "name": "Grace Hopper",
        "country": "US",
        "company": "US Navy",
        "phone": "+16502530000",
        "Lead Source": '\'=HYPERLINK("http://evil")',
    }
    assert x.traits == {"email": "x@y.io", "firstName": "X", "name": "X", "country": "DE"}


def test_each_lead_is_an_identify_event_of_the_keys_source_naming_its_list() -> None:
    _, events = run_import(LIST)
    ada = events[0]
    assert ada.type == "identify"
    assert ada.source == "partner-key", "the write key's source: a list cannot pose as another"
    # The list has no user id column: the lead is its email, no userId is claimed for it.
    assert (ada.user_id, ada.anonymous_id) == (None, None)
    assert ada.partition_key == "ada@example.com"
    assert ada.received_at == ada.timestamp == NOW
    assert ada.context["import"] == {
        "id": "imp-1",
        "list": "webinar-q4",
        "row": 2,
    }


def test_message_ids_repeat_for_the_same_file_and_change_with_the_content() -> None:
    _, first = run_import(LIST)
    _, again = run_import(LIST, chunk=1000)
    _, changed = run_import(LIST.replace(b"Analytical", b"Analytic"))
    assert [e.message_id for e in first] == [e.message_id for e in again]
    assert changed[0].message_id != first[0].message_id
    assert changed[1].message_id == first[1].message_id
    assert len({e.message_id for e in first}) == 3


def test_leads_come_out_in_first_seen_order() -> None:
    rows = "".join(f"lead{n}@x.io\n" for n in (5, 3, 9, 3, 1, 5))
    _, events = run_import(f"Email\n{rows}".encode())
    assert [e.traits["email"] for e in events] == [f"lead{n}@x.io" for n in (5, 3, 9, 1)]


def test_the_listed_rejections_are_capped_but_all_are_counted() -> None:
    bad = "".join(f"bad{n}@\n" for n in range(MAX_LISTED_REJECTIONS + 25))
    report, events = run_import(f"Email\n{bad}ok@x.io\n".encode(), chunk=4096)
    assert report.rejected == MAX_LISTED_REJECTIONS + 25
    assert len(report.rejections) == MAX_LISTED_REJECTIONS
    assert report.as_json()["rejectionsNotListed"] == 25
    assert report.rejections[0].startswith("row 2: invalid email 'bad0@'")
    assert [e.traits["email"] for e in events] == ["ok@x.io"]


def test_warnings_are_listed_by_the_row_that_lost_the_value_even_when_rows_merge() -> None:
    body = (
        b"Email,Phone,Country,User ID\n"
        b"ann@x.io,555,US,\n"  # row 2
        b"bob@x.io,+1 650 253 0000,US,\n"  # row 3
        b"ANN@x.io,+1 650 253 0000,Atlantis,crm-9\n"  # row 4, merged into row 2's lead
        b"=1@x.io,555,,\n"  # row 5: rejected, so no warning either
    )
    report, events = run_import(body)

    expected = {
        "rowsRead": 4,
        "accepted": 3,
        "rejected": 1,
        "warned": 2,
        "duplicatesMerged": 1,
        "leads": 2,
        "warnings": [
            "row 2: phone '555' dropped: not a valid number",
            "row 4: country 'Atlantis' dropped: not a known country name or ISO code",
        ],
        "warningsNotListed": 0,
    }
    assert {name: report.as_json()[name] for name in expected} == expected
    ann, bob = events
    # Row 2 lost its phone, so the duplicate's fills it; its country (and row 4's userId) stay.
    assert ann.traits == {"email": "ann@x.io", "phone": "+16502530000", "country": "US"}
    assert (ann.user_id, ann.partition_key) == ("crm-9", "crm-9")
    assert (bob.user_id, bob.partition_key) == (None, "bob@x.io")


def test_the_listed_warnings_are_capped_but_all_are_counted() -> None:
    # Each row loses two values: the rows past the cap are counted, not listed.
    rows = "".join(f"lead{n}@x.io,555,Atlantis\n" for n in range(MAX_LISTED_WARNINGS // 2 + 10))
    report, events = run_import(f"Email,Phone,Country\n{rows}".encode(), chunk=4096)

    summary = report.as_json()
    assert (summary["accepted"], summary["rejected"], summary["warned"]) == (510, 0, 510)
    assert len(summary["warnings"]) == MAX_LISTED_WARNINGS
    assert summary["warningsNotListed"] == 20
    assert summary["warnings"][:2] == [
        "row 2: country 'Atlantis' dropped: not a known country name or ISO code",
        "row 2: phone '555' dropped: no country code and no country to assume",
    ]
    assert len(events) == 510


def test_rows_with_more_cells_than_headers_or_too_large_values_are_rejected() -> None:
    body = f"Email,Name\na@x.io,Ann,surplus\nb@x.io,Bo,,\nc@x.io,{'n' * 40_000}\n".encode()
    report, events = run_import(body, chunk=4096)
    assert report.rejections == [
        "row 2: 3 cells but the header names 2 columns",
        "row 4: the row's values are larger than 32 KB",
    ]
    assert [e.traits["email"] for e in events] == ["b@x.io"]  # empty surplus cells are harmless


def test_a_given_mapping_is_used() -> None:
    body = b"Contact,Mail\nAnn Lee,ann@x.io\n"
    _, events = run_import(body, mapping={"Mail": "email", "Contact": "name"})
    assert events[0].traits == {
        "email": "ann@x.io",
        "firstName": "Ann",
        "lastName": "Lee",
        "name": "Ann Lee",
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the first row is empty"),
        (b"Name,Company\nAnn,Acme\n", "no email column"),
        (b"Email,Name\xff\n", "not UTF-8"),
    ],
)
def test_an_unimportable_file_is_refused_whole(body: bytes, reason: str) -> None:
    with pytest.raises(BadUpload) as refused:
        run_import(body)
    assert reason in str(refused.value)


def test_a_header_only_file_imports_nothing() -> None:
    report, events = run_import(b"Email,Name\r\n")
    assert (report.rows_read, report.leads, events) == (0, 0, [])


def test_ndjson_lines_map_their_keys_like_headers() -> None:
    lines: list[Any] = [
        {"E-mail": "Ann@X.io", "Job Title": "CTO", "employees": 40},
        {"name": "no email"},
        {"email": "bob@x.io", "company": {"name": "Bobco"}},
        {"email": "ann@x.io", "Job Title": "CEO", "city": "Oslo"},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n[1]\n"
    report, events = run_import(body, file_format="ndjson")
    assert report.rejections == [
        "row 2: missing email",
        "row 5: a JSON list, not an object",
    ]
    assert report.warnings == ["row 3: company dropped: must be text, not dict"]
    assert (report.accepted, report.duplicates_merged, report.leads) == (3, 1, 2)
    assert events[0].traits == {
        "email": "ann@x.io",
        "title": "CTO",
        "employees": 40,
        "city": "Oslo",
    }
    assert events[1].traits == {"email": "bob@x.io"}


def test_a_merged_lead_stops_growing_at_the_size_limit() -> None:
    lines = [orjson.dumps({"email": "a@x.io", f"k{n}": "v" * 20_000}) for n in range(10)]
    report, events = run_import(b"\n".join(lines), file_format="ndjson", chunk=65_536)
    assert (report.accepted, report.duplicates_merged, report.leads) == (10, 9, 1)
    assert 40_000 < len(orjson.dumps(events[0].traits)) <= 65_536
