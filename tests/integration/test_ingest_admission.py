"""Attacks on ingest's edges that its write keys, limits and deadlines now stop (issue
"Hardening"): each test is named after the attack. Real uvicorn, real broker; slow clients are
raw sockets, so a test controls exactly what is sent and when."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from services.ingest.config import WriteKey
from tests.fixtures.ingest import WEBSITE_KEY, StartIngest

LISTS_KEY, OTHER_LISTS_KEY = "wk-lists-4d1c", "wk-lists-8e2f"
KEYS = {
    "website": WriteKey.of(WEBSITE_KEY, source="website", scopes=["track"]),
    "lists": WriteKey.of(LISTS_KEY, source="crm-lists", scopes=["import"]),
    "more-lists": WriteKey.of(OTHER_LISTS_KEY, source="events-team", scopes=["import"]),
}
TRACK = b'{"userId": "u-1", "event": "Demo Requested"}'
CSV = b"email\nada@initech.com\n"


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class RawClient:
    """One HTTP/1.1 request written by hand on a socket: the head at once, the body when told."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send_head(self, path: str, *, headers: dict[str, str], length: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"POST {path} HTTP/1.1", "Host: ingest", f"Content-Length: {length}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        """Send more of the body; nothing if the server has closed the connection."""
        assert self.writer is not None
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            pass

    def answer(self, *, within_s: float) -> asyncio.Task[int]:
        """Start reading the answer now (it may come, and the connection close, while the
        client is still sending)."""
        return asyncio.create_task(self.status(within_s=within_s))

    async def status(self, *, within_s: float) -> int:
        """The answer's status code, which must come within `within_s`."""
        assert self.reader is not None
        line = await asyncio.wait_for(self.reader.readline(), timeout=within_s)
        return int(line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def test_an_unknown_key_in_the_header_is_refused_before_the_body_is_read(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS)
    client = RawClient(ingest.port)
    # 400 KB announced, none sent: ingest used to wait for (and parse) the body first.
    await client.send_head(
        "/v1/batch",
        headers={"Authorization": basic("a-guess"), "Content-Type": "application/json"},
        length=400_000,
    )
    try:
        assert await client.status(within_s=3) == 401
    finally:
        client.close()


async def test_a_public_website_key_cannot_import_lists_nor_read_import_reports(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS)
    website = {"Authorization": basic(WEBSITE_KEY), "Content-Type": "text/csv"}

    upload = await ingest.client.post(
        "/v1/leads/import", params={"list": "vip"}, content=CSV, headers=website
    )
    done = await ingest.client.post(
        "/v1/leads/import",
        params={"list": "vip"},
        content=CSV,
        headers={"Authorization": basic(LISTS_KEY), "Content-Type": "text/csv"},
    )
    location = done.headers["Location"]
    by_website = await ingest.client.get(location, headers=website)
    by_other_lists_key = await ingest.client.get(
        location, headers={"Authorization": basic(OTHER_LISTS_KEY)}
    )
    by_owner = await ingest.client.get(location, headers={"Authorization": basic(LISTS_KEY)})

    assert upload.status_code == 403
    assert "scope 'import'" in upload.json()["error"]
    assert done.status_code == 200, done.text
    assert by_website.status_code == 403
    assert by_other_lists_key.status_code == 404, "another key's report is not even named"
    assert by_owner.status_code == 200
    events = await ingest.events(1)
    assert (events[0].source, events[0].context["import"]["list"]) == ("crm-lists", "vip")


async def test_one_visitor_holding_the_website_key_cannot_drain_its_limit(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(
        write_keys=KEYS, rate_limit_per_address_events_per_s=0.1, rate_limit_per_address_burst=2
    )
    visitor = {"X-Forwarded-For": "203.0.113.7"}  # as a trusted proxy names the client

    answers = [(await ingest.post("/v1/track", TRACK, **visitor)).status_code for _ in range(3)]
    another_visitor = await ingest.post("/v1/track", TRACK, **{"X-Forwarded-For": "203.0.113.8"})

    assert answers == [200, 200, 429]
    assert another_visitor.status_code == 200


async def test_guessing_write_keys_from_one_address_is_throttled(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS, auth_failures_per_s=0.1, auth_failures_burst=3)

    guesses = [
        (await ingest.post("/v1/track", TRACK, key=f"guess-{n}")).status_code for n in range(5)
    ]
    in_body = await ingest.post("/v1/track", b'{"writeKey": "guess", "event": "x"}', key=None)
    valid = await ingest.post("/v1/track", TRACK)

    assert guesses == [401, 401, 401, 429, 429]
    assert in_body.status_code == 429
    assert valid.status_code == 200, "a valid key is never refused for its address's guesses"


async def test_a_trickling_tracking_call_gets_408_instead_of_holding_the_request(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS, tracking_body_deadline_s=1.5)
    client = RawClient(ingest.port)
    await client.send_head(
        "/v1/track",
        headers={"Authorization": basic(WEBSITE_KEY), "Content-Type": "application/json"},
        length=len(TRACK),
    )
    started = time.monotonic()
    answer = client.answer(within_s=5)
    try:
        for byte in TRACK[:10]:  # a byte every 0.3 s: never idle, never done
            await client.send(bytes([byte]))
            await asyncio.sleep(0.3)
        assert await answer == 408
        assert time.monotonic() - started < 5
    finally:
        client.close()
    assert (await ingest.health.get("/healthz")).status_code == 200


@pytest.mark.parametrize("slots_per_key", [1])
async def test_slow_uploads_of_one_key_neither_hold_its_slot_forever_nor_block_another_key(
    start_ingest: StartIngest, slots_per_key: int
) -> None:
    ingest = await start_ingest(
        write_keys=KEYS,
        import_slots_per_key=slots_per_key,
        import_min_rate_bytes_per_s=1000,
        import_rate_grace_s=1,
    )
    slow = RawClient(ingest.port)
    await slow.send_head(
        "/v1/leads/import?list=slow",
        headers={"Authorization": basic(LISTS_KEY), "Content-Type": "text/csv"},
        length=1_000_000,
    )
    answer = slow.answer(within_s=10)
    try:
        await slow.send(b"email\n")
        await asyncio.sleep(0.3)  # the import has started and holds the key's slot
        second = await ingest.client.post(
            "/v1/leads/import",
            params={"list": "again"},
            content=CSV,
            headers={"Authorization": basic(LISTS_KEY), "Content-Type": "text/csv"},
        )
        other_key = await ingest.client.post(
            "/v1/leads/import",
            params={"list": "expo"},
            content=CSV,
            headers={"Authorization": basic(OTHER_LISTS_KEY), "Content-Type": "text/csv"},
        )
        for _ in range(4):  # a byte now and then, well under 1,000 bytes/s
            await slow.send(b"a")
            await asyncio.sleep(0.5)
        assert await answer == 408
    finally:
        slow.close()
    freed = await ingest.client.post(
        "/v1/leads/import",
        params={"list": "again"},
        content=CSV,
        headers={"Authorization": basic(LISTS_KEY), "Content-Type": "text/csv"},
    )

    assert second.status_code == 429
    assert "already runs 1 imports" in second.json()["error"]
    assert other_key.status_code == 200, other_key.text
    assert freed.status_code == 200, "the slow upload's slot was given back"


async def test_the_public_port_serves_no_docs_schema_or_metrics(start_ingest: StartIngest) -> None:
    ingest = await start_ingest(write_keys=KEYS)

    public = {
        path: (await ingest.client.get(path)).status_code
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics", "/healthz", "/readyz")
    }
    metrics = await ingest.health.get("/metrics")

    assert public == dict.fromkeys(public, 404)
    assert metrics.status_code == 200
    assert "leadflow" in metrics.text
