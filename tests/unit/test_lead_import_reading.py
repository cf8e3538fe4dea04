"""Byte streams to records: encodings, gzip, delimiters, quoted line breaks, chunk boundaries,
oversized rows, NDJSON."""

from __future__ import annotations

import gzip

import pytest

from services.ingest.lead_import.reading import (
    MAX_RECORD_CHARS,
    BadUpload,
    CsvRecords,
    NdjsonRecords,
    Record,
    TextDecoder,
)


def decode_all(data: bytes, *, chunk: int) -> str:
    decoder = TextDecoder()
    parts = [decoder.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return "".join(parts) + decoder.finish()


def csv_records(text: str, *, chunk: int, delimiter: str | None = None) -> list[Record]:
    reader = CsvRecords(delimiter=delimiter)
    records: list[Record] = []
    for i in range(0, len(text), chunk):
        records.extend(reader.feed(text[i : i + chunk]))
    return records + reader.finish()


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize(
    "encoded",
    [
        "Émilie,Zoë\n".encode(),
        "\ufeffÉmilie,Zoë\n".encode(),  # Excel's "CSV UTF-8" starts with a BOM
        "\ufeffÉmilie,Zoë\n".encode("utf-16-le"),  # Excel's "Unicode text"
        gzip.compress("Émilie,Zoë\n".encode()),
    ],
    ids=["utf-8", "utf-8 BOM", "utf-16 BOM", "gzip"],
)
def test_text_is_decoded_incrementally(encoded: bytes, chunk: int) -> None:
    assert decode_all(encoded, chunk=chunk) == "Émilie,Zoë\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        ("name\nJos\xe9\n".encode("latin-1"), "not UTF-8 text (invalid byte at offset 8)"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "not valid gzip"),
        (gzip.compress(b"email\na@b.io\n")[:-12], "truncated upload"),
    ],
)
def test_unreadable_bodies_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadUpload) as refused:
        decode_all(data, chunk=4)
    assert reason in str(refused.value)


@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 10_000])
def test_quoted_line_breaks_delimiters_and_quotes_survive_any_chunking(chunk: int) -> None:
    text = (
        "Email,Notes,Company\r\n"
        'a@b.io,"line one\r\nline two","Acme, Inc."\r\n'
        'c@d.io,"she said ""hi""",\r\n'
        "\r\n"
        "e@f.io,plain,X"  # no final line break
    )
    records = csv_records(text, chunk=chunk)
    assert records == [
        Record(1, ["Email", "Notes", "Company"]),
        Record(2, ["a@b.io", "line one\r\nline two", "Acme, Inc."]),
        Record(3, ["c@d.io", 'she said "hi"', ""]),
        Record(4, []),
        Record(5, ["e@f.io", "plain", "X"]),
    ]


@pytest.mark.parametrize(("delimiter", "sep"), [(",", ","), (";", ";"), ("\t", "\t"), ("|", "|")])
def test_the_delimiter_is_guessed_from_the_header(delimiter: str, sep: str) -> None:
    reader = CsvRecords()
    records = reader.feed(f"Email{sep}Name{sep}Company\na@b.io{sep}Ann{sep}A B\n")
    assert reader.delimiter == delimiter
    assert records[1].cells == ["a@b.io", "Ann", "A B"]


def test_a_given_delimiter_is_used() -> None:
    records = CsvRecords(delimiter=";").feed("Email,x;Name\na@b.io,y;Ann\n")
    assert records[1].cells == ["a@b.io,y", "Ann"]


@pytest.mark.parametrize("chunk", [4096, 300_000])
def test_an_oversized_row_is_reported_and_reading_goes_on(chunk: int) -> None:
    many_quoted_cells = '"x\ny",' * (MAX_RECORD_CHARS // 6 + 10)  # one row over many lines
    one_long_line = ",".join(["y" * 1000] * (MAX_RECORD_CHARS // 1000 + 5))
    text = f"Email,Notes\na@b.io,{many_quoted_cells}\nc@d.io,{one_long_line}\ne@f.io,ok\n"
    records = csv_records(text, chunk=chunk)
    assert [(r.row, r.problem) for r in records] == [
        (1, None),
        (2, "row longer than 1,048,576 characters"),
        (3, "row longer than 1,048,576 characters"),
        (4, None),
    ]
    assert records[-1].cells == ["e@f.io", "ok"]


def test_a_cell_over_the_csv_field_limit_rejects_only_its_row() -> None:
    text = f'Email,Notes\na@b.io,"{"z" * 200_000}"\nc@d.io,ok\n'
    records = csv_records(text, chunk=65_536)
    assert records[1].row == 2
    assert records[1].problem is not None
    assert records[1].problem == "a cell longer than 131,072 characters"
    assert records[2] == Record(3, ["c@d.io", "ok"])


@pytest.mark.parametrize("chunk", [3, 10_000])
def test_a_stray_quote_inside_an_unquoted_cell_is_a_literal_quote(chunk: int) -> None:
    records = csv_records('Email,Size\na@b.io,5" screen\nc@d.io,ok\n', chunk=chunk)
    assert records == [
        Record(1, ["Email", "Size"]),
        Record(2, ["a@b.io", '5" screen']),
        Record(3, ["c@d.io", "ok"]),
    ]


def test_a_quote_never_closed_is_reported_at_the_end() -> None:
    records = csv_records('Email,Notes\na@b.io,ok\nc@d.io,"never closed\nmore\n', chunk=8)
    assert records[-1] == Record(3, None, "a quoted cell is never closed")


@pytest.mark.parametrize("chunk", [1, 6, 10_000])
def test_ndjson_lines_are_objects_numbered_by_line(chunk: int) -> None:
    text = '{"email": "a@b.io"}\n\n[1]\n{broken\n{"email": "c@d.io", "n": 2}'
    reader = NdjsonRecords()
    records: list[Record] = []
    for i in range(0, len(text), chunk):
        records.extend(reader.feed(text[i : i + chunk]))
    records += reader.finish()
    assert [(r.row, r.cells, r.problem and r.problem.split(":")[0]) for r in records] == [
        (1, {"email": "a@b.io"}, None),
        (2, [], None),
        (3, None, "a JSON list, not an object"),
        (4, None, "not valid JSON"),
        (5, {"email": "c@d.io", "n": 2}, None),
    ]


def test_an_oversized_ndjson_line_is_skipped() -> None:
    reader = NdjsonRecords()
    records = reader.feed('{"email": "' + "x" * (MAX_RECORD_CHARS + 1))
    records += reader.feed('"}\n{"email": "a@b.io"}\n')
    records += reader.finish()
    assert [(r.row, r.problem) for r in records] == [
        (1, "line longer than 1,048,576"),
        (2, None),
    ]
