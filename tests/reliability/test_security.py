"""Security: per-key rate limits hold under concurrent load, no SQL is assembled from anything
but literals in the code, and no email or phone number reaches a log line in clear.

Requests without or with a wrong write key are refused with 401: tests/integration/
test_tracking_api.py (`test_a_missing_or_unknown_write_key_gets_401`, every way of passing a key)
and tests/integration/test_ingest_api.py; the token bucket itself: tests/unit/
test_ingest_rate_limit.py. Not repeated here.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import logging
import re
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from shared.telemetry import install_pii_redaction, redact_pii
from shared.topics import CRM_FEEDBACK, EVENTS_RAW
from tests.fixtures.infra import REPO
from tests.fixtures.load import SegmentLoad
from tests.fixtures.pipeline import WRITE_KEY, Pipeline, PipelineFactory
from tests.reliability.sql_scan import scan, scan_source

# ---- SQL only from literals ----------------------------------------------------------------------

SCANNED = ("services", "shared", "devstack", "bench", "examples")
# (file, formatted-in expression) -> why it is not input. Identifiers cannot be bind parameters.
ALLOWED: dict[tuple[str, str], str] = {
    ("shared/consumer/store.py", "schema"): (
        "create_runner_tables(schema): DDL run by migrations, each passing its service's schema "
        "as a literal (checked below)"
    ),
    ("shared/consumer/store.py", "self._schema"): (
        "RunnerStore's schema: the consuming service's own schema name, given in its code "
        "(ConsumerRunner(schema=...)); a quoted identifier"
    ),
    ("shared/config_versions.py", "self._schema"): (
        "VersionedConfig's schema: the owning service's own schema name, given in its code; "
        "__init__ refuses anything but a plain lower-case identifier (SCHEMA_PATTERN, tests/unit/"
        "test_config_versions.py); a quoted identifier"
    ),
    ("shared/simulations.py", "self._schema"): (
        "Simulations' schema: the owning service's own schema name, given in its code; "
        "__init__ refuses anything but a plain lower-case identifier (config_versions."
        "checked_schema); a quoted identifier"
    ),
    ("shared/privacy.py", "self._schema"): (
        "ErasedLeads' schema: the owning service's own schema name, given in its code; "
        "__init__ refuses anything but a plain lower-case identifier (config_versions."
        "checked_schema); a quoted identifier"
    ),
    ("shared/migrations.py", "schema"): (
        "CREATE SCHEMA for the service being migrated; the schema comes from the service's code"
    ),
    ("shared/migrations.py", "name"): (
        "the index of create/drop/replace_index_concurrently: checked_schema refuses anything but "
        "a plain identifier, and every migration passes a literal (checked below)"
    ),
    ("shared/migrations.py", "building"): (
        "replace_index_concurrently's temporary index: the checked name plus '_new', checked again"
    ),
    ("shared/migrations.py", "definition"): (
        "create_index_concurrently's `ON table (columns)`: DDL a migration writes as a literal "
        "(checked below); CREATE INDEX takes no bind parameters"
    ),
    ("services/ingest/lead_import/spool.py", "int(pages)"): (
        "SQLite's PRAGMA max_page_count takes no bind parameter; the value is an int computed "
        "from the spool's configured byte limits, converted by int() at the call"
    ),
    ("bench/infra.py", "name"): (
        "CREATE / DROP DATABASE of a benchmark step: bench_<uuid4 hex>, made by fresh_database"
    ),
}


def test_sql_is_assembled_only_from_literals_in_the_code() -> None:
    findings = scan(REPO, SCANNED)

    unexplained = [str(f) for f in findings for e in f.interpolated if (f.path, e) not in ALLOWED]
    assert unexplained == [], "SQL formatted from non-literals; use bind parameters"
    used = {(f.path, e) for f in findings for e in f.interpolated}
    assert set(ALLOWED) <= used, f"stale allow-list entries: {set(ALLOWED) - used}"


def test_runner_tables_are_created_only_for_literal_schemas() -> None:
    calls = re.findall(r"create_runner_tables\(([^)]*)\)", _sources("services"))
    assert calls, "no migration creates the runner's tables?"
    assert all(re.fullmatch(r'"[a-z_]+"', c.strip()) for c in calls), calls


def test_versioned_configuration_tables_are_created_only_for_literal_schemas() -> None:
    """config_versions_ddl(schema) formats the schema into its DDL (it also refuses any name but
    a plain identifier); a migration passes its service's schema as a literal, as it does to
    create_runner_tables."""
    calls = re.findall(
        r"(?:config_versions|config_imports|simulations|erased_leads)_ddl\(([^)]*)\)",
        _sources("services"),
    )
    assert all(re.fullmatch(r'"[a-z_]+"', c.strip()) for c in calls), calls


def test_indexes_are_built_concurrently_only_from_literals() -> None:
    """The migrations' index helpers format their name and definition into DDL: every call passes
    literal strings (a definition may format in an upper-case module constant, as router 0007
    does)."""
    calls = [
        node
        for path in sorted((REPO / "services").rglob("migrations/versions/*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.endswith("_index_concurrently")
    ]
    assert len(calls) >= 10, "the migrations no longer build indexes concurrently?"
    for call in calls:
        for argument in [*call.args, *(k.value for k in call.keywords)]:
            assert _literal_text(argument), ast.unparse(call)


def _literal_text(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (
                isinstance(v, ast.FormattedValue)
                and isinstance(v.value, ast.Name)
                and v.value.id.isupper()
            )
            for v in node.values
        )
    return False


@pytest.mark.parametrize(
    "source",
    [
        "session.execute(text(f\"SELECT * FROM t WHERE email = '{email}'\"))",
        'conn.fetch("SELECT * FROM t WHERE id = %s" % lead_id)',
        'conn.fetchval("SELECT * FROM t WHERE id = {}".format(lead_id))',
        'conn.execute("DELETE FROM t WHERE id = " + lead_id)',
        'await fetch(session, f"SELECT * FROM t WHERE id = {lead_id}")',
        'await execute(session, "DELETE FROM t WHERE id = " + lead_id)',
        'q = f"SELECT {column} FROM t"\nsession.execute(text(q))',
        'def f(table):\n    return text(f"SELECT * FROM {table}")',
        'def f(x):\n    for table in x:\n        op.execute(f"DROP TABLE {table}")',
    ],
)
def test_the_scan_finds_sql_formatted_from_input(source: str) -> None:
    assert scan_source(source), source


@pytest.mark.parametrize(
    "source",
    [
        'session.execute(text("SELECT * FROM t WHERE email = :email"), {"email": email})',
        'COLS = "a, b"\ndef f():\n    return text(f"SELECT {COLS} FROM t")',
        'def f():\n    for t in ("a", "b"):\n        op.execute(f"DROP TABLE {t}")',
        'def f(x):\n    c = "AND y" if x else ""\n    return text(f"SELECT 1 {c}")',
        'log.info(f"not SQL: {email}")',
        'await fetch(session, "SELECT * FROM t WHERE name LIKE $1", f"{prefix}%")',
    ],
)
def test_the_scan_accepts_literal_fragments_and_bind_parameters(source: str) -> None:
    assert scan_source(source) == [], source


def _sources(folder: str) -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / folder).rglob("*.py")))


# ---- rate limit under concurrent load ------------------------------------------------------------

RATE, BURST, CLIENTS, SECONDS, PER_BATCH = 20, 40, 4, 4.0, 5


async def test_a_write_keys_rate_limit_holds_under_concurrent_clients(
    pipeline_factory: PipelineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_INGEST_RATE_LIMIT_EVENTS_PER_S", str(RATE))
    monkeypatch.setenv("LEADFLOW_INGEST_RATE_LIMIT_BURST", str(BURST))
    pipeline = pipeline_factory()
    pipeline.addresses.write_keys["other-key"] = "other-site"
    await pipeline.start("ingest")
    accepted, refused = 0, 0
    retry_after: set[int] = set()

    async def client(n: int) -> None:
        nonlocal accepted, refused
        async with httpx.AsyncClient(base_url=pipeline.ingest_url, timeout=10) as http:
            i = 0
            while time.monotonic() < until:
                batch = [
                    {"type": "track", "userId": f"u{n}", "event": "E", "messageId": f"{n}-{i}-{j}"}
                    for j in range(PER_BATCH)
                ]
                i += 1
                response = await http.post(
                    "/v1/batch", json={"batch": batch}, headers=_basic(WRITE_KEY)
                )
                if response.status_code == 200:
                    accepted += PER_BATCH
                else:
                    assert response.status_code == 429, response.text
                    refused += PER_BATCH
                    retry_after.add(int(response.headers["Retry-After"]))
                await asyncio.sleep(0.01)

    began = time.monotonic()
    until = began + SECONDS
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    elapsed = time.monotonic() - began

    assert refused > 0
    assert accepted <= BURST + RATE * elapsed + PER_BATCH, (accepted, elapsed)
    assert accepted >= BURST  # the limit throttles, it does not shut the key out
    assert retry_after
    assert all(1 <= s <= BURST // RATE + 1 for s in retry_after), retry_after
    async with httpx.AsyncClient(base_url=pipeline.ingest_url) as http:
        other = await http.post(
            "/v1/track", json={"userId": "o", "event": "E"}, headers=_basic("other-key")
        )
    assert other.status_code == 200  # another key has its own bucket
    # What was refused was not produced: events.raw holds exactly the accepted events.
    records = await pipeline.read_all(EVENTS_RAW.full_name(pipeline.prefix))
    assert len(records) == accepted + 1


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# ---- PII in logs -------------------------------------------------------------------------------

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not linking value='Ada.L+x@initech.com'", "not linking value='***@initech.com'"),
        ("call +14155550123 or +44 20 7946 0958", "call <phone> or <phone>"),
        ("(415) 555-0123 / 415-555-0123 / 415.555.0123", "<phone> / <phone> / <phone>"),
        ("events.raw[3]@4021 offset 123456789012 port 8000", None),
        ("2026-11-23 17:36:01,123 550e8400-e29b-41d4-a716-446655440000 1.5.0", None),
        # internationalised addresses (the attack: a name the ASCII pattern did not see)
        ("from josé.garcía@exämple.de", "from ***@exämple.de"),
        ("from 用户@例子.广告 ok", "from ***@例子.广告 ok"),
        # a visitor's public address (access log, X-Forwarded-For), v4 and v6
        ('81.2.69.142:51234 - "POST /v1/batch"', '<ip>:51234 - "POST /v1/batch"'),
        ("forwarded for 2a00:1450:4001:82b::200e", "forwarded for <ip>"),
        # the cluster's own and local addresses stay readable; so do times
        ("listening on 127.0.0.1:8092, pod 10.42.0.17, ::1, fe80::1 at 12:30:45", None),
    ],
)
def test_redaction_masks_emails_phones_and_public_ips_and_nothing_else(
    text: str, expected: str | None
) -> None:
    assert redact_pii(text) == (text if expected is None else expected)
    assert redact_pii(redact_pii(text)) == redact_pii(text)


async def test_no_email_or_phone_reaches_the_logs_in_clear(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("INGEST", "ENRICH", "SCORE", "ROUTER"):
        monkeypatch.setenv(f"LEADFLOW_{service}_LOG_LEVEL", "DEBUG")
    await pipeline.start("ingest", "enrich", "score", "router")
    load = SegmentLoad(ingest_url=pipeline.ingest_url, write_key=WRITE_KEY, batches_per_s=5)
    traffic = asyncio.create_task(load.run())
    # Paths that log about a person: one email claimed by two userIds ("not linked"), CRM
    # feedback about an unknown email (dead-lettered with the email in its reason), and a
    # poison message full of PII (dead-lettered by both services that read crm.feedback).
    shared_email, phone, unknown = (
        "twice.claimed@initech.com",
        "+442079460958",
        "nobody.known@globex.com",
    )
    for user in ("claim-1", "claim-2"):
        traits = {"email": shared_email, "phone": phone, "title": "CTO"}
        assert (await pipeline.post("/v1/identify", {"userId": user, "traits": traits})).is_success
    about_unknown = {
        "feedback_id": "fb-unknown-email",
        "email": unknown,
        "outcome": "accepted",
        "at": "2026-01-05T10:00:00Z",
    }
    poison = {"email": unknown, "outcome": "accepted", "phone": phone}
    pipeline.produce_raw(CRM_FEEDBACK, orjson.dumps(about_unknown), key=unknown.encode())
    pipeline.produce_raw(CRM_FEEDBACK, orjson.dumps(poison), key=unknown.encode())
    feedback = re.escape(CRM_FEEDBACK.full_name(pipeline.prefix)) + r"\[\d+\]@\d+"
    # The lines those paths write, by service: each must be there, or the check for PII below
    # proves nothing about them.
    targeted = {
        "enrich": [r"lead [0-9a-f-]+: email not linked: it belongs to a lead with another userId"],
        "score": [
            rf"dead-lettering {feedback}: feedback fb-unknown-email: no lead with id None"
            r" or email '[^']*@globex\.com'",
            rf"dead-lettering {feedback}: invalid CrmFeedback: feedback_id: Field required",
        ],
        "router": [rf"dead-lettering {feedback}: invalid CrmFeedback: feedback_id: Field required"],
    }

    def read_logs() -> dict[str, str]:
        return {
            name: p.log_file.read_text(errors="replace")
            for name, p in pipeline.processes.items()
            if p.log_file
        }

    def missing(logs: dict[str, str]) -> dict[str, list[str]]:
        absent = {
            name: [line for line in lines if not re.search(line, logs.get(name, ""))]
            for name, lines in targeted.items()
        }
        return {name: lines for name, lines in absent.items() if lines}

    await asyncio.sleep(6)
    load.stop()
    report = await traffic
    for _ in range(60):  # up to 30 s for them to be written
        if not missing(read_logs()):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # anything the services still write about them

    logs = read_logs()
    assert set(logs) == {"ingest", "enrich", "score", "router"}
    assert all(logs.values()), "no logs captured"
    assert missing(logs) == {}, "the log lines this test is about were not written"
    assert report.emails, "the load sent no email"
    assert report.phones, "the load sent no phone number"
    secrets = report.emails | report.phones | {shared_email, phone, unknown}
    leaks = {
        name: sorted(
            {s for s in secrets if s in text}
            | {m for m in EMAIL.findall(text) if not m.startswith("***@")}
        )
        for name, text in logs.items()
    }
    assert {name: found for name, found in leaks.items() if found} == {}
    # ... and the email on the line about it is there, redacted (the domain kept).
    assert "no lead with id None or email '***@globex.com'" in logs["score"]


@pytest.fixture
def redacting() -> Iterator[None]:
    """Redaction installed in this process for one test (the services install it at start)."""
    before = logging.getLogRecordFactory()
    install_pii_redaction()
    yield
    logging.setLogRecordFactory(before)


@pytest.mark.usefixtures("redacting")
def test_redaction_keeps_uvicorns_access_log_working() -> None:
    """uvicorn's access formatter unpacks the record's arguments: they stay, redacted."""
    from uvicorn.logging import AccessFormatter

    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/leads/ada@initech.com/explain", "1.1", 200),
        None,
    )
    line = AccessFormatter("%(message)s", use_colors=False).format(record)
    assert line == '127.0.0.1:5000 - "GET /v1/leads/***@initech.com/explain HTTP/1.1" 200'


@pytest.mark.usefixtures("redacting")
def test_redaction_covers_arguments_exceptions_and_objects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("leadflow.test")
    identity = type(
        "Identity", (), {"__repr__": lambda self: "Identity(value='ada@initech.com')"}
    )()
    with caplog.at_level(logging.INFO, logger="leadflow.test"):
        log.info("not linking %r (phone %s)", identity, "+14155550123")
        try:
            raise ValueError("duplicate key (email)=(grace@globex.com)")
        except ValueError:
            log.exception("failed")
    text = "\n".join(caplog.text.splitlines())
    for clear in ("ada@", "grace@", "+1415"):
        assert clear not in text
    for masked in ("***@initech.com", "***@globex.com", "<phone>"):
        assert masked in text
