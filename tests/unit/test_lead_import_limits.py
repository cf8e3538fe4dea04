"""The lead import's bounds against hostile uploads: gzip bombs, deep NDJSON rows, huge headers,
many finished reports, a spool that outgrows its share (issue "Hardening")."""

from __future__ import annotations

import dataclasses
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from services.ingest.lead_import.progress import ImportRegistry, ReportExpired
from services.ingest.lead_import.reading import GzipInflater, TextDecoder, UploadTooLarge
from services.ingest.lead_import.report import (
    MAX_LISTED_BYTES,
    MAX_REPORT_BYTES,
    ImportReport,
    ImportState,
)
from services.ingest.lead_import.spool import LeadSpool, SpoolFull, SpoolQuota
from services.ingest.lead_import.upload import LeadListUpload

pytestmark = pytest.mark.unit

MiB = 1024 * 1024


def gzip_bomb(*, inflated: int, header: bytes = b"Email\n") -> Iterator[bytes]:
    """A gzip stream of `header` then `inflated` bytes of one character, made a MiB at a time
    (the inflated body is never held)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    yield compressor.compress(header)
    block = b"a" * MiB
    for _ in range(inflated // MiB):
        if out := compressor.compress(block):
            yield out
    yield compressor.flush()


def inflate_all(inflater: GzipInflater, chunks: Iterator[bytes]) -> None:
    """Push each chunk and take every slice, as the upload does."""
    for chunk in chunks:
        inflater.push(chunk)
        while inflater.backlog:
            inflater.next_slice()


def upload_all(upload: LeadListUpload, chunks: Iterator[bytes] | list[bytes]) -> None:
    for chunk in chunks:
        upload.feed(chunk)
    upload.finish()


def test_the_slicing_inflater_hands_out_at_most_one_slice_per_step() -> None:
    compressed = b"".join(gzip_bomb(inflated=64 * MiB))
    assert len(compressed) < 100_000  # a thousandfold
    inflater = GzipInflater(max_bytes=1 << 40, max_ratio=1e9, slice_bytes=256 * 1024)
    inflater.push(compressed)  # the whole bomb at once: still inflated a slice at a time
    steps, total = 0, 0
    while inflater.backlog:
        piece = inflater.next_slice()
        assert len(piece) <= 256 * 1024
        steps, total = steps + 1, total + len(piece)
    total += len(inflater.finish())
    assert total == 64 * MiB + len(b"Email\n")
    assert steps >= 256


def test_a_gzip_bomb_is_refused_after_inflating_at_most_a_slice_past_the_cap() -> None:
    inflater = GzipInflater(max_bytes=8 * MiB, max_ratio=1e9, slice_bytes=MiB)
    with pytest.raises(UploadTooLarge, match="inflates to more than 8,388,608 bytes"):
        inflate_all(inflater, gzip_bomb(inflated=300 * MiB))
    assert inflater.bytes_out <= 9 * MiB


def test_a_gzip_bomb_is_refused_by_its_compression_ratio() -> None:
    inflater = GzipInflater(max_bytes=1 << 40, max_ratio=100, slice_bytes=MiB)
    with pytest.raises(UploadTooLarge, match="more than 100 times its compressed size"):
        inflate_all(inflater, gzip_bomb(inflated=300 * MiB))
    assert inflater.bytes_out <= 18 * MiB  # the 16 MiB grace, then a slice


def test_the_text_decoder_feeds_a_bomb_one_slice_at_a_time() -> None:
    decoder = TextDecoder(max_inflated_bytes=1 << 40, max_gzip_ratio=1e9, inflate_slice=MiB)
    compressed = b"".join(gzip_bomb(inflated=32 * MiB))
    texts = [decoder.feed(compressed)]
    while decoder.backlog:
        texts.append(decoder.more())
    assert max(len(text) for text in texts) <= MiB
    assert sum(len(text) for text in texts) + len(decoder.finish()) == 32 * MiB + 6


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"max_inflated_bytes": 32 * MiB, "max_gzip_ratio": 1e9}, "inflates to more than"),
        ({}, "more than 100 times its compressed size"),  # the defaults
    ],
)
def test_a_gzip_bomb_upload_is_refused_as_too_large_in_bounded_memory(
    limits: dict[str, float], reason: str
) -> None:
    report = ImportReport(import_id="bomb", list_name="l")
    upload = LeadListUpload(
        report=report,
        file_format="csv",
        spool=LeadSpool(None),
        **limits,  # type: ignore[arg-type]
    )
    tracemalloc.start()
    try:
        with pytest.raises(UploadTooLarge, match=reason):
            upload_all(upload, gzip_bomb(inflated=300 * MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    upload.close()
    assert peak < 16 * MiB  # the old decoder held all a chunk inflates to (~256 MiB here)


def test_an_ndjson_row_nested_too_deep_is_rejected_and_the_rest_imported() -> None:
    deep: object = "x"
    for _ in range(300):
        deep = {"k": deep}
    body = b"\n".join(
        [
            orjson.dumps({"email": "a@b.io"}),
            orjson.dumps({"email": "deep@b.io", "notes": "x"}).replace(
                b'"x"', b'{"k":' * 300 + b'"x"' + b"}" * 300
            ),
            orjson.dumps({"email": "c@d.io"}),
        ]
    )
    report = ImportReport(import_id="deep", list_name="l")
    upload = LeadListUpload(report=report, file_format="ndjson", spool=LeadSpool(None))
    upload.feed(body)
    upload.finish()
    upload.close()
    assert (report.accepted, report.rejected, report.leads) == (2, 1, 2)
    assert report.rejections == ["row 2: values nested deeper than 252 levels"]


def huge_header_upload(import_id: str) -> ImportReport:
    """An import whose CSV header has a column name of 130 KB (csv's limit per cell is 128 KiB)
    and 400 of 2 KB (a header row of almost 1 MiB, 500 columns at most), every row rejected; then 2,000 long reasons, as a report can be given
    them (a rejection or a warning quotes what it refuses)."""
    headers = ["Email", "N" * 130_000, *(f"{i:04d}" + "h" * 2000 for i in range(400))]
    rows = "".join(f"{'x' * 5000}@,a\n" for _ in range(100))
    report = ImportReport(import_id=import_id, list_name="l", owner="s")
    upload = LeadListUpload(report=report, file_format="csv", spool=LeadSpool(None))
    upload.feed((",".join(headers) + "\n" + rows).encode())
    upload.finish()
    upload.close()
    for row in range(2000):
        report.reject(row, "r" * 5000)
        report.accept(row, ["w" * 5000, "v" * 5000])
    report.state = ImportState.DONE
    return report


def test_a_report_with_huge_headers_and_quoted_rejections_stays_within_its_budget() -> None:
    report = huge_header_upload("big-headers")
    size = len(orjson.dumps(report.as_json()))
    assert size <= MAX_REPORT_BYTES
    assert (report.rejected, report.warned) == (2100, 2000)
    # Cut by bytes before the count of 1,000 lines: the rest are counted.
    assert sum(map(len, report.rejections)) <= MAX_LISTED_BYTES
    assert sum(map(len, report.warnings)) <= MAX_LISTED_BYTES
    answer = report.as_json()
    assert answer["rejectionsNotListed"] == 2100 - len(report.rejections) > 1100
    assert answer["warningsNotListed"] == 4000 - len(report.warnings) > 3000
    assert any(column.startswith("... ") for column in report.columns)  # how many left out
    assert any("characters)" in column for column in report.columns)  # a cut header says so


def test_many_finished_uploads_with_huge_headers_keep_the_registry_under_its_byte_cap() -> None:
    registry = ImportRegistry(ttl_s=3600, max_bytes=4 * MiB)
    template = huge_header_upload("template")
    for n in range(300):
        report = dataclasses.replace(template, import_id=f"i{n}")
        registry.begin(report)
        registry.finish(report, now=float(n))
        assert registry.size_bytes <= 4 * MiB
    kept = [registry.get(f"i{n}", owner="s", now=300.0) for n in range(300)]
    assert kept[0] is None
    assert kept[-1] is not None
    held = sum(len(orjson.dumps(r.as_json())) for r in kept if r is not None)
    assert held == registry.size_bytes


def test_a_finished_report_expires_after_its_ttl() -> None:
    registry = ImportRegistry(ttl_s=60, max_bytes=4 * MiB)
    report = ImportReport(import_id="i1", list_name="l", owner="s")
    registry.begin(report)
    assert registry.get("i1", owner="s", now=1000.0) is report  # running: never expires
    report.state = ImportState.DONE
    registry.finish(report, now=1000.0)
    assert registry.get("i1", owner="s", now=1059.0) is report
    assert registry.get("i1", owner="other", now=1059.0) is None
    with pytest.raises(ReportExpired):
        registry.get("i1", owner="s", now=1060.0)
    assert registry.get("i1", owner="other", now=1061.0) is None  # not even that it was
    assert registry.size_bytes == 0


def leads_csv(count: int) -> bytes:
    rows = "".join(f"lead{i}@example.com,Lead {i},Acme {i},Title {i}\n" for i in range(count))
    return ("Email,Name,Company,Title\n" + rows).encode()


def test_an_import_past_its_spool_cap_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    spool = LeadSpool.scratch_file(str(tmp_path), max_bytes=256 * 1024)
    report = ImportReport(import_id="i", list_name="l")
    upload = LeadListUpload(report=report, file_format="csv", spool=spool)
    with pytest.raises(SpoolFull, match="more than 262,144 bytes of merge space"):
        upload_all(upload, [leads_csv(20_000)])
    upload.close()
    assert list(tmp_path.iterdir()) == []


def test_spools_share_the_replica_quota(tmp_path: Path) -> None:
    quota = SpoolQuota(512 * 1024)
    first = LeadSpool.scratch_file(str(tmp_path), quota=quota)
    upload = LeadListUpload(
        report=ImportReport(import_id="a", list_name="l"), file_format="csv", spool=first
    )
    upload.feed(leads_csv(500))
    upload.finish()
    used = quota.used
    assert 0 < used < 512 * 1024
    second = LeadSpool.scratch_file(str(tmp_path), quota=quota)
    other = LeadListUpload(
        report=ImportReport(import_id="b", list_name="l"), file_format="csv", spool=second
    )
    with pytest.raises(SpoolFull, match="use all their merge space"):
        upload_all(other, [leads_csv(20_000)])
    assert quota.used <= 512 * 1024 + 64 * 1024
    other.close()
    upload.close()
    assert quota.used == 0
    assert list(tmp_path.iterdir()) == []
