"""Attacks on ingest against the real process and broker (issue "Hardening"): a gzip bomb
uploaded as a lead list, JSON nested deeper than the event store writes, an import that outgrows
its spool, an expired import report, and a call resent without a messageId."""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from shared.codec import decode
from shared.contracts import RawEvent
from shared.topics import EVENTS_RAW
from tests.fixtures.pipeline import WRITE_KEY, Pipeline, PipelineFactory

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
MiB = 1024 * 1024


@pytest.fixture
async def ingest(pipeline: Pipeline) -> Pipeline:
    await pipeline.start("ingest")
    return pipeline


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def gzip_bomb(*, inflated: int) -> bytes:
    """A CSV of `inflated` bytes of one character after its header, gzip-compressed a MiB at a
    time (about 1,000 times smaller; the inflated text is never held)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(b"Email\n")]
    block = b"a" * MiB
    parts += [compressor.compress(block) for _ in range(inflated // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


async def in_chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_gzip_bomb_lead_list_gets_413_in_bounded_memory(ingest: Pipeline) -> None:
    bomb = gzip_bomb(inflated=300 * MiB)
    assert len(bomb) < 400 * 1024
    process = ingest.processes["ingest"].process
    assert process is not None
    rss_before = peak_rss_kb(process.pid)

    async with httpx.AsyncClient(base_url=ingest.ingest_url, timeout=120) as client:
        response = await client.post(
            "/v1/leads/import",
            params={"list": "bomb"},
            headers={**AUTH, "Content-Type": "text/csv", "Content-Encoding": "gzip"},
            content=in_chunks(bomb),
        )
        health = await client.get(ingest.addresses.health_url("ingest", "/healthz"))
    growth_mb = (peak_rss_kb(process.pid) - rss_before) / 1024
    print(f"\ningest peak RSS growth during a {len(bomb) // 1024} KB gzip bomb: {growth_mb:.1f} MB")

    assert response.status_code == 413, response.text[:500]
    answer = response.json()
    assert (answer["success"], answer["state"], answer["leads"]) == (False, "failed", 0)
    assert "compression bomb" in answer["error"]
    assert health.status_code == 200
    assert growth_mb < 60


def deep(levels: int) -> bytes:
    return b'{"k":' * levels + b'"x"' + b"}" * levels


async def test_a_batch_item_nested_300_deep_gets_400_naming_the_item(ingest: Pipeline) -> None:
    body = (
        b'{"batch":[{"type":"track","anonymousId":"a","event":"Ok"},'
        b'{"type":"track","anonymousId":"a","event":"Deep","properties":{"p":' + deep(300) + b"}}]}"
    )
    async with httpx.AsyncClient(base_url=ingest.ingest_url, timeout=30) as client:
        response = await client.post(
            "/v1/batch", headers={**AUTH, "Content-Type": "application/json"}, content=body
        )
        single = await client.post(
            "/v1/identify",
            headers={**AUTH, "Content-Type": "application/json"},
            content=b'{"userId":"u","traits":{"t":' + deep(300) + b"}}",
        )
    assert response.status_code == 400, response.text[:500]
    assert response.json()["errors"] == [
        "batch[1]: nested deeper than 254 levels (objects and lists in one another)"
    ]
    assert single.status_code == 400, single.text[:500]
    assert single.json()["errors"] == [
        "nested deeper than 254 levels (objects and lists in one another)"
    ]


async def test_an_ndjson_row_nested_300_deep_is_rejected_and_the_rest_imported(
    ingest: Pipeline,
) -> None:
    body = b"\n".join(
        [
            b'{"email":"ann@acme.io"}',
            b'{"email":"deep@acme.io","notes":' + deep(300) + b"}",
            b'{"email":"bob@acme.io"}',
        ]
    )
    async with httpx.AsyncClient(base_url=ingest.ingest_url, timeout=30) as client:
        response = await client.post(
            "/v1/leads/import",
            params={"list": "deep"},
            headers={**AUTH, "Content-Type": "application/x-ndjson"},
            content=body,
        )
    assert response.status_code == 200, response.text[:500]
    report = response.json()
    assert (report["leads"], report["published"], report["rejected"]) == (2, 2, 1)
    assert report["rejections"] == ["row 2: values nested deeper than 252 levels"]


async def test_an_import_past_its_spool_cap_gets_413_and_its_report_expires(
    pipeline_factory: PipelineFactory, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    pipeline = pipeline_factory()
    pipeline.addresses.service_env["ingest"] = {
        "TMPDIR": str(spool_dir),
        "LEADFLOW_INGEST_IMPORT_SPOOL_MAX_BYTES": str(256 * 1024),
        "LEADFLOW_INGEST_IMPORT_REPORT_TTL_S": "2",
    }
    await pipeline.start("ingest")
    rows = "".join(f"lead{i}@example.com,Lead {i},Acme {i}\n" for i in range(20_000))
    async with httpx.AsyncClient(base_url=pipeline.ingest_url, timeout=60) as client:
        response = await client.post(
            "/v1/leads/import",
            params={"list": "big"},
            headers={**AUTH, "Content-Type": "text/csv", "X-Import-Id": "too-big"},
            content=("Email,Name,Company\n" + rows).encode(),
        )
        assert response.status_code == 413, response.text[:500]
        assert "more than 262,144 bytes of merge space" in response.json()["error"]
        assert list(spool_dir.iterdir()) == []

        fits = await client.post(
            "/v1/leads/import",
            params={"list": "small"},
            headers={**AUTH, "Content-Type": "text/csv", "X-Import-Id": "small"},
            content=b"Email\nann@acme.io\n",
        )
        assert fits.status_code == 200, fits.text[:500]
        assert (await client.get("/v1/leads/import/small", headers=AUTH)).status_code == 200
        await asyncio.sleep(2.5)
        expired = await client.get("/v1/leads/import/small", headers=AUTH)
    assert expired.status_code == 404
    assert "expired" in expired.json()["error"]
    assert list(spool_dir.iterdir()) == []


async def test_a_call_resent_without_a_message_id_has_the_same_message_id(
    ingest: Pipeline,
) -> None:
    call = {"anonymousId": "anon-9", "event": "Signed Up", "properties": {"plan": "pro"}}
    first = await ingest.post("/v1/track", call)
    await asyncio.sleep(1.1)  # the retry arrives later (another receivedAt)
    retry = await ingest.post("/v1/track", call)
    assert (first.status_code, retry.status_code) == (200, 200)

    records = await ingest.read(EVENTS_RAW.full_name(ingest.prefix), until=lambda r: len(r) >= 2)
    events = [decode(record.value, RawEvent) for record in records]
    assert len(events) == 2
    assert events[0].received_at != events[1].received_at
    assert events[0].message_id == events[1].message_id
    assert events[0].message_id.startswith("derived-")
    assert orjson.loads(records[0].value or b"{}")["properties"] == {"plan": "pro"}
