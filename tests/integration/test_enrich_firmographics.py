"""enrich with a firmographics vendor that is down: events still flow at once without company
facts, and the leads are re-enriched (a `profile_updated`) once the vendor answers again. The
vendor is a real HTTP server in the test. Accounts and the suppression list ride along."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest

from devstack.broker import free_port
from services.enrich.config import DATA_DIR
from shared.topics import EVENTS_ENRICHED
from tests.fixtures.pipeline import Pipeline
from tests.integration.test_enrich_identity import enriched, send


class Vendor:
    """A firmographics vendor: 503 while `down`, else facts for initech.com and 404 otherwise."""

    def __init__(self) -> None:
        self.down = True
        self.calls: list[str] = []
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                vendor.calls.append(self.path)
                if vendor.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path != "/v1/companies/initech.com":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(
                    {
                        "name": "Initech",
                        "employee_count": 450,
                        "industry": "Software",
                        "annual_revenue_usd": 72000000,
                        "country": "US",
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    vendor = Vendor()
    thread = threading.Thread(target=vendor.server.serve_forever, daemon=True)
    thread.start()
    yield vendor
    vendor.server.shutdown()
    vendor.server.server_close()


async def test_provider_down_delays_nothing_and_the_lead_is_re_enriched_later(
    pipeline: Pipeline, vendor: Vendor, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "FIRMOGRAPHICS_PROVIDER": "http",
        "VENDOR_URL": vendor.url,
        "VENDOR_RETRIES": "1",
        "VENDOR_BREAKER_RESET_S": "1",
        "REENRICH_INTERVAL_S": "0.5",
        "REENRICH_BACKOFF_INITIAL_S": "0.5",
        "REENRICH_BACKOFF_MAX_S": "1",
        "ACCOUNTS_FILE": str(DATA_DIR / "accounts.csv"),
        "SUPPRESSIONS_FILE": str(DATA_DIR / "suppressions.csv"),
    }.items():
        monkeypatch.setenv(f"LEADFLOW_ENRICH_{name}", value)
    await pipeline.start("enrich")
    run = uuid.uuid4().hex[:6]

    send(pipeline, message_id=f"{run}-1", at=0, type="identify", anonymous_id=f"a-{run}",
         traits={"email": f"ada.{run}@initech.com", "title": "Head of Engineering",
                 "company": "Initech"})  # fmt: skip
    events = await enriched(pipeline, f"{run}-1")
    first = next(e for e in events if e["message_id"] == f"{run}-1")
    assert first["firmographics"] is None
    assert first["firmographics_pending"] is True
    assert first["profile"]["company_domain"] == "initech.com"
    assert vendor.calls  # it was asked, and failed
    assert await db.fetchval("SELECT count(*) FROM enrich.pending_enrichment") == 1

    vendor.down = False
    lead = first["lead_id"]
    records = await pipeline.read(
        EVENTS_ENRICHED.full_name(pipeline.prefix),
        until=lambda rs: any(r.json()["kind"] == "profile_updated" for r in rs),
        timeout_s=30,
    )
    update = next(r.json() for r in records if r.json()["kind"] == "profile_updated")
    assert update["lead_id"] == lead
    assert update["firmographics_pending"] is False
    firmographics = update["firmographics"]
    assert (firmographics["employee_count"], firmographics["size_band"]) == (450, "201-500")
    assert firmographics["revenue_band"] == "50M-100M"
    assert firmographics["sources"]["employee_count"] == "http:127.0.0.1"
    assert update["lead_version"] > first["lead_version"]
    assert await db.fetchval("SELECT count(*) FROM enrich.pending_enrichment") == 0

    # The vendor is up and remembered: the next lead at Initech is complete at once. A lead at
    # a customer account matches it by email domain; a suppressed address is flagged.
    send(pipeline, message_id=f"{run}-2", at=5, type="identify", anonymous_id=f"b-{run}",
         traits={"email": f"bob.{run}@initech.com"})  # fmt: skip
    send(pipeline, message_id=f"{run}-3", at=6, type="identify", anonymous_id=f"c-{run}",
         traits={"email": f"vera.{run}@acme-robotics.com", "company": "Acme Robotics"})  # fmt: skip
    send(pipeline, message_id=f"{run}-4", at=7, type="identify", anonymous_id=f"d-{run}",
         traits={"email": "legal-hold@globex.com"})  # fmt: skip
    send(pipeline, message_id=f"{run}-5", at=8, anonymous_id=f"d-{run}", event="Page Viewed")
    events = await enriched(pipeline, f"{run}-2", f"{run}-3", f"{run}-5")
    by_id = {e["message_id"]: e for e in events}
    assert by_id[f"{run}-2"]["firmographics"]["company_name"] == "Initech"
    acme = by_id[f"{run}-3"]
    assert acme["firmographics"] is None  # the vendor does not know it: no facts, not pending
    assert acme["firmographics_pending"] is False
    assert (acme["account"]["account_id"], acme["account"]["confidence"]) == ("acct-0001", "strong")
    assert acme["account_id"] == "acct-0001"
    assert acme["account"]["owner_email"] == "grace.hopper@lumenboard.io"
    suppressed = by_id[f"{run}-5"]["consent"]
    assert (suppressed["email_opt_out"], suppressed["suppressed"]) == (True, True)
