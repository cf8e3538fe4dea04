"""Bad input against the real service processes (issue "Hardening"): a gzip bomb, JSON nested
deeper than the event store writes, a YAML alias bomb, catastrophic regexes and slow clients.

Each attack runs against the real process while its `/healthz` is probed back to back and its
memory sampled (tests/fixtures/attack.py). Each must be refused with a 4xx or, for a regex RE2
can run, answered in linear time; every health probe must be answered within HEALTH_MAX_MS, and
memory must grow less than a bound the attack passed before its fix. The run ends with one table
of every attack (tests/reliability/conftest.py).

What the cases saw with each fix taken out by hand (in a copy of the tree):
- gzip bomb, inflated whole instead of in 1 MiB slices (`reading.INFLATE_SLICE`): ingest grew
  from about 100 MB to 1,000 MB and a health probe waited about 1 s; with the limits raised
  instead (LEADFLOW_INGEST_IMPORT_MAX_GZIP_RATIO, ..._MAX_INFLATED_BYTES): 200, not 413;
- deep nesting, without the catch of what orjson parses (1,024 levels) but cannot write (254):
  500;
- alias bomb, with aliases followed: no answer in 10 s, score 650-870 MB larger and growing,
  a health probe about 0.9 s;
- regex bomb, with Python's backtracking `re`: no answer in 10 s, and half the health probes
  none within 2 s (the match holds the GIL);
- slow clients, before ingest paced bodies (`services/ingest/body.py`) and counted import slots
  per write key: no answer to a trickled body before the client gave up, and a third import
  of one key accepted.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import yaml

from services.score.engine.ruleset import DEFAULT_RULES_FILE
from shared.topics import EVENTS_ENRICHED
from tests.fixtures.attack import AttackTable, Watch, watching
from tests.fixtures.pipeline import WRITE_KEY, Pipeline, PipelineFactory
from tests.fixtures.polling import eventually
from tests.integration.test_ingest_hardening import deep, gzip_bomb, in_chunks
from tests.integration.test_score_lifecycle import enriched

# `make test-reliability` only: the file runs for about a minute, and bounds of milliseconds
# mean something only on a machine that is not also running the rest of `make test`.
pytestmark = pytest.mark.slow

HEALTH_MAX_MS = 100
MiB = 1024 * 1024
CSV = {"Content-Type": "text/csv"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def watch(pipeline: Pipeline, service: str) -> AbstractContextManager[Watch]:
    """`watching` the service's process and `/healthz`."""
    process = pipeline.processes[service].process
    assert process is not None
    return watching(pid=process.pid, health_url=pipeline.addresses.health_url(service, "/healthz"))


@dataclass
class Sent:
    """What an attack of repeated requests got: every answer, and why the last request got
    none, if it did not (the service stalled past the client's timeout, or died)."""

    responses: list[httpx.Response] = field(default_factory=list)
    failure: str | None = None

    @property
    def statuses(self) -> set[int]:
        return {response.status_code for response in self.responses}

    def answer(self) -> str:
        """For the table: the statuses, how many, and the first answer's reason."""
        if not self.responses:
            return f"no answer: {self.failure}"
        statuses = "/".join(map(str, sorted(self.statuses)))
        failed = f", then no answer: {self.failure}" if self.failure else ""
        return f"{statuses} x{len(self.responses)}: {reason_of(self.responses[0])}{failed}"


async def repeat_for(
    seconds: float, send: Callable[[], Awaitable[httpx.Response]], *, clients: int = 1
) -> Sent:
    """`send` again and again for `seconds` (at least once), from `clients` clients at once: an
    attack that takes milliseconds lasts long enough for the health probes to see it. A request
    without an answer ends its client's loop."""
    sent = Sent()
    until = time.monotonic() + seconds

    async def client() -> None:
        while True:
            try:
                sent.responses.append(await send())
            except httpx.HTTPError as exc:
                sent.failure = f"{type(exc).__name__} {exc}".strip()
                return
            if time.monotonic() >= until:
                return

    await asyncio.gather(*(client() for _ in range(clients)))
    return sent


_LOCATION = re.compile(r"^request body: line \d+: [\w.]+: (Value error, )?")


def reason_of(response: httpx.Response) -> str:
    """The reason an answer gives, shortened for the table (its first clause, without the
    line and field a rules-file error starts with)."""
    try:
        body = response.json()
    except ValueError:
        return repr(response.text[:40])
    if not isinstance(body, dict):
        return repr(response.text[:40])
    if not (body.get("errors") or body.get("error")) and "leads" in body:  # an import's report
        return f"{body['leads']} leads imported, {body.get('rejected')} rows rejected"
    reason = str((body.get("errors") or [body.get("error")])[0])
    reason = _LOCATION.sub("", reason).split("; ")[0]
    return reason if len(reason) <= 64 else reason[:63] + "…"


def assert_service_held(watch: Watch, *, growth_mb: float) -> None:
    """The service answered every health probe within HEALTH_MAX_MS, and its memory grew by
    less than `growth_mb`."""
    assert watch.killed_at_mb is None, f"memory passed {watch.killed_at_mb:.0f} MB: killed"
    assert watch.health_failures == [], watch.health_failures[:5]
    assert watch.health_max_ms < HEALTH_MAX_MS, sorted(watch.health_ms)[-5:]
    assert watch.growth_mb < growth_mb, (watch.rss_before_mb, watch.rss_peak_mb)


@pytest.fixture
async def ingest(pipeline: Pipeline) -> Pipeline:
    await pipeline.start("ingest")
    return pipeline


@pytest.fixture
async def score(pipeline: Pipeline) -> Pipeline:
    await pipeline.start("score")
    return pipeline


# ---- ingest: gzip bomb, deep nesting -------------------------------------------------------

BOMB_INFLATED = 300 * MiB


async def test_gzip_bomb_lead_lists_get_413_while_ingest_answers_in_bounded_memory(
    ingest: Pipeline, attack_table: AttackTable
) -> None:
    bomb = gzip_bomb(inflated=BOMB_INFLATED)
    with watch(ingest, "ingest") as seen:
        async with httpx.AsyncClient(base_url=ingest.ingest_url, timeout=60) as client:
            sent = await repeat_for(
                2,
                lambda: client.post(
                    "/v1/leads/import",
                    params={"list": "bomb"},
                    headers={**basic(WRITE_KEY), **CSV, "Content-Encoding": "gzip"},
                    content=in_chunks(bomb),
                ),
                clients=2,  # as many as one key may run at once
            )
    attack_table.record(
        tried=f"gzip bomb: lead lists of {len(bomb) // 1024} KB inflating to "
        f"{BOMB_INFLATED // MiB} MiB",
        answer=sent.answer(),
        watch=seen,
    )

    assert sent.statuses == {413}, sent.answer()
    assert "compression bomb" in sent.responses[0].json()["error"]
    # Before the fix ingest grew from 75 to 665 MB on one; it inflates 1 MiB slices now.
    assert_service_held(seen, growth_mb=60)


DEEP_CALL = (
    b'{"type":"track","anonymousId":"a","event":"Deep","properties":{"p":' + deep(300) + b"}}"
)
DEEP_BATCH = b'{"batch":[' + b",".join([DEEP_CALL] * 80) + b"]}"  # 24,162 objects, under the cap
FLOOD_BATCH = b'{"batch":[' + b",".join([DEEP_CALL] * 240) + b"]}"  # 438 KB, 72,482 objects
TOO_DEEP = "nested deeper than 254 levels (objects and lists in one another)"


async def batches_for_two_seconds(
    ingest: Pipeline, attack_table: AttackTable, body: bytes, *, tried: str
) -> tuple[Sent, Watch]:
    """Two clients posting `body` to /v1/batch back to back for 2 s, watched; the row recorded."""
    with watch(ingest, "ingest") as seen:
        async with httpx.AsyncClient(base_url=ingest.ingest_url, timeout=30) as client:
            sent = await repeat_for(
                2,
                lambda: client.post(
                    "/v1/batch",
                    headers={**basic(WRITE_KEY), "Content-Type": "application/json"},
                    content=body,
                ),
                clients=2,
            )
    attack_table.record(tried=tried, answer=sent.answer(), watch=seen)
    return sent, seen


async def test_batches_of_calls_nested_300_deep_get_400_while_ingest_answers(
    ingest: Pipeline, attack_table: AttackTable
) -> None:
    sent, seen = await batches_for_two_seconds(
        ingest,
        attack_table,
        DEEP_BATCH,
        tried=f"deep nesting: batches of 80 calls nested 300 deep ({len(DEEP_BATCH) // 1024} KB)",
    )

    assert sent.statuses == {400}, sent.answer()
    errors = sent.responses[0].json()["errors"]
    assert errors[:2] == [f"batch[0]: {TOO_DEEP}", f"batch[1]: {TOO_DEEP}"]
    assert errors[-1] == "... and 30 more"  # 50 reasons, not 80
    assert_service_held(seen, growth_mb=60)


async def test_batches_of_72_000_objects_are_refused_unparsed_while_ingest_answers(
    ingest: Pipeline, attack_table: AttackTable
) -> None:
    """Parsing costs by the object: 438 KB of nested objects took ~21 ms of the event loop per
    request (a real batch of that size ~3.5 ms), enough for two clients to hold health past
    100 ms. Such a body is now refused before it is parsed."""
    sent, seen = await batches_for_two_seconds(
        ingest,
        attack_table,
        FLOOD_BATCH,
        tried=f"object flood: batches of 72,000 nested objects ({len(FLOOD_BATCH) // 1024} KB)",
    )

    assert sent.statuses == {400}, sent.answer()
    assert "more than 25,000 objects and lists" in sent.responses[0].json()["errors"][0]
    assert_service_held(seen, growth_mb=60)


# ---- score: alias bomb, regex bombs ---------------------------------------------------------


def candidate_with(rule: str) -> str:
    """The default rules file as a candidate, with one more rule written as YAML flow text."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "candidate-bad-input"
    document["rules"].append("RULE")
    return yaml.safe_dump(document, sort_keys=False).replace("- RULE\n", f"- {rule}\n")


def alias_bomb(*, levels: int = 9, width: int = 9) -> str:
    """A candidate with a rule whose condition is `width`**`levels` field tests (9**9: 387
    million) once its aliases are followed, written in 600 bytes ("billion laughs")."""
    node = "&n0 {field: event, equals: Laugh}"
    for level in range(1, levels + 1):
        node = f"&n{level} {{any: [{node}" + f", *n{level - 1}" * (width - 1) + "]}"
    return candidate_with(f"{{id: laughs, group: intent, points: 1, reason: laughs, when: {node}}}")


async def simulate(score: Pipeline, candidate: str, *, seconds: float) -> Sent:
    """Ask score to simulate `candidate`, again and again for `seconds` (a candidate refused
    when validated is answered 400 each time; a valid one starts once, then 409 while it runs)."""
    async with httpx.AsyncClient(
        base_url=score.addresses.api_url("score"), headers=score.addresses.api_headers, timeout=10
    ) as client:
        return await repeat_for(
            seconds, lambda: client.post("/v1/rules/simulations", json={"yaml": candidate})
        )


async def simulated(score: Pipeline, candidate: str) -> tuple[dict[str, Any], float]:
    """Simulate `candidate` once in the background; its final state, and the seconds it took."""
    began = time.monotonic()
    async with httpx.AsyncClient(
        base_url=score.addresses.api_url("score"), headers=score.addresses.api_headers, timeout=10
    ) as client:
        started = await client.post("/v1/rules/simulations", json={"yaml": candidate})
        assert started.status_code == 202, started.text
        state = await eventually(
            lambda: client.get(f"/v1/rules/simulations/{started.json()['id']}"),
            "the simulation finished",
            until=lambda answer: answer.json()["status"] != "running",
            timeout_s=60,
        )
    return state.json(), time.monotonic() - began


async def test_a_yaml_alias_bomb_candidate_gets_400_while_score_answers(
    score: Pipeline, attack_table: AttackTable
) -> None:
    with watch(score, "score") as seen:
        sent = await simulate(score, alias_bomb(), seconds=1.5)
    attack_table.record(
        tried="alias bomb: a rules file whose 9**9 tests are aliases of aliases",
        answer=sent.answer(),
        watch=seen,
    )

    assert sent.statuses == {400}, sent.answer()
    error = sent.responses[0].json()["error"]
    assert "anchors and aliases (&name, *name) are not allowed" in error
    assert_service_held(seen, growth_mb=60)


NOTE = "a" * 20_000 + "!"  # a backtracking `(a+)+$` tries 2**20000 ways before it fails
NOTES = 20


def with_regex(pattern: str) -> str:
    rule = {
        "id": "note-pattern",
        "group": "intent",
        "points": 5,
        "reason": "left a note matching the pattern",
        "when": {"field": "properties.note", "regex": pattern},
    }
    return candidate_with(orjson.dumps(rule).decode())  # JSON is YAML flow text


async def test_regex_bombs_are_run_in_linear_time_or_refused_while_score_answers(
    score: Pipeline, db: asyncpg.Connection, attack_table: AttackTable
) -> None:
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    for n in range(NOTES):
        score.produce_raw(
            EVENTS_ENRICHED,
            enriched(lead, f"note-{n}", event="Note Left", properties={"note": NOTE}),
            key=lead.encode(),
        )
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM score.history WHERE lead_id = $1", lead),
        f"score storing the {NOTES} notes",
        until=lambda count: count == NOTES,
    )
    stored = f"on {NOTES} stored notes of {len(NOTE):,} chars"

    # RE2 runs it: matching takes time linear in the text.
    with watch(score, "score") as seen:
        state, seconds = await simulated(score, with_regex(r"(a+)+$"))
    answer = f"{state['status']} in {seconds * 1000:.0f} ms: run in linear time (RE2)"
    attack_table.record(tried=f"regex bomb (a+)+$ {stored}", answer=answer, watch=seen)
    assert state["status"] == "done", state
    assert state["result"]["leads"] == 1
    assert_service_held(seen, growth_mb=60)

    # RE2 has no backreferences: a pattern with one is refused when the candidate is validated.
    with watch(score, "score") as seen:
        refused = await simulate(score, with_regex(r"(a+)+\1$"), seconds=1.5)
    attack_table.record(tried=f"regex bomb (a+)+\\1$ {stored}", answer=refused.answer(), watch=seen)
    assert refused.statuses == {400}, refused.answer()
    assert "not a regular expression RE2 can run" in refused.responses[0].json()["error"]
    assert_service_held(seen, growth_mb=60)


# ---- ingest: slow clients --------------------------------------------------------------------

BODY_IDLE_TIMEOUT_S = 1.5
TRACKING_BODY_DEADLINE_S = 2.0
IMPORT_MIN_RATE = 2000  # bytes per second, once the grace has passed
IMPORT_RATE_GRACE_S = 3.0
IMPORT_SLOTS_PER_KEY = 2
SLACK_S = 1.5  # how late after its limit the 408 may come
OTHER_KEY = "other-key"


@pytest.fixture
async def patient_ingest(pipeline_factory: PipelineFactory) -> Pipeline:
    """ingest with short limits for slow bodies, and a second write key."""
    pipeline = pipeline_factory()
    pipeline.addresses.write_keys[OTHER_KEY] = "other-site"
    pipeline.addresses.service_env["ingest"] = {
        "LEADFLOW_INGEST_BODY_IDLE_TIMEOUT_S": str(BODY_IDLE_TIMEOUT_S),
        "LEADFLOW_INGEST_TRACKING_BODY_DEADLINE_S": str(TRACKING_BODY_DEADLINE_S),
        "LEADFLOW_INGEST_IMPORT_MIN_RATE_BYTES_PER_S": str(IMPORT_MIN_RATE),
        "LEADFLOW_INGEST_IMPORT_RATE_GRACE_S": str(IMPORT_RATE_GRACE_S),
        "LEADFLOW_INGEST_IMPORT_SLOTS_PER_KEY": str(IMPORT_SLOTS_PER_KEY),
    }
    await pipeline.start("ingest")
    return pipeline


@dataclass(frozen=True)
class Trickled:
    """What a trickling client got: the status (None: no answer before it gave up), the body,
    and how long after it started sending the answer came."""

    status: int | None
    body: bytes
    elapsed_s: float

    def error(self) -> str:
        try:
            return str(orjson.loads(self.body).get("error"))
        except (orjson.JSONDecodeError, AttributeError):
            return repr(self.body[:60])

    def answer(self) -> str:
        if self.status is None:
            return f"no answer in {self.elapsed_s:.1f} s"
        return f"{self.status} after {self.elapsed_s:.1f} s: {self.error()[:50]}"


async def trickle(
    pipeline: Pipeline,
    path: str,
    *,
    headers: dict[str, str],
    pieces: Iterator[bytes],
    interval_s: float,
    give_up_s: float,
    declared_bytes: int = 10 * MiB,
) -> Trickled:
    """POST to ingest a body declared `declared_bytes` long, of which one piece is sent every
    `interval_s` (none after the pieces run out: a stalled client) until ingest answers or
    `give_up_s` has passed. A plain socket: an HTTP client would not read the answer before
    it has sent the whole body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", pipeline.addresses.ingest_port)
    head = [f"POST {path} HTTP/1.1", "Host: ingest", f"Content-Length: {declared_bytes}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    began = time.monotonic()
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    answered = asyncio.ensure_future(_read_answer(reader))
    try:
        while not answered.done() and time.monotonic() - began < give_up_s:
            piece = next(pieces, None)
            if piece is not None:
                try:
                    writer.write(piece)
                    await writer.drain()
                except ConnectionError:
                    pass  # ingest closed the connection: its answer is read below
            await asyncio.wait({answered}, timeout=interval_s)
        if not answered.done():
            answered.cancel()
            return Trickled(None, b"", time.monotonic() - began)
        status, body = await answered
        return Trickled(status, body, time.monotonic() - began)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int | None, bytes]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, b""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        ),
        None,
    )
    try:
        body = await (reader.readexactly(length) if length is not None else reader.read())
    except (asyncio.IncompleteReadError, ConnectionError):
        body = b""
    return status, body


def trickled_rows(first: bytes, *, piece: bytes) -> Iterator[bytes]:
    yield first
    while True:
        yield piece


async def test_a_tracking_call_trickled_past_its_deadline_gets_408_while_ingest_answers(
    patient_ingest: Pipeline, attack_table: AttackTable
) -> None:
    ingest = patient_ingest
    with watch(ingest, "ingest") as seen:
        got = await trickle(
            ingest,
            "/v1/track",
            headers={**basic(WRITE_KEY), "Content-Type": "application/json"},
            pieces=trickled_rows(b'{"userId":"u","event":"E","properties":{"p":"', piece=b"x"),
            interval_s=0.25,  # well within the idle timeout: only the deadline can stop it
            declared_bytes=2000,
            give_up_s=TRACKING_BODY_DEADLINE_S + 5,
        )
    attack_table.record(
        tried=f"slow client: tracking call, 1 byte / 0.25 s (deadline {TRACKING_BODY_DEADLINE_S:g} s)",
        answer=got.answer(),
        watch=seen,
    )

    assert got.status == 408, got
    assert orjson.loads(got.body)["success"] is False
    assert TRACKING_BODY_DEADLINE_S * 0.9 <= got.elapsed_s <= TRACKING_BODY_DEADLINE_S + SLACK_S
    assert_service_held(seen, growth_mb=30)


ROW_BYTES = 20  # a row every 0.1 s: 200 bytes/s, a tenth of the minimum rate


def lead_rows(prefix: str) -> Iterator[bytes]:
    """A lead list's header, then rows of ROW_BYTES for ever (`prefix`: 4 characters)."""
    yield b"Email\n"
    n = 0
    while True:
        n += 1
        row = f"{prefix}{n:07}@slow.io\n".encode()
        assert len(row) == ROW_BYTES, row
        yield row


async def test_an_import_trickled_below_the_minimum_rate_or_stalled_gets_408(
    patient_ingest: Pipeline, attack_table: AttackTable
) -> None:
    ingest = patient_ingest
    with watch(ingest, "ingest") as trickling:
        trickled = await trickle(
            ingest,
            "/v1/leads/import?list=trickled",
            headers={**basic(WRITE_KEY), **CSV},
            pieces=lead_rows("tric"),
            interval_s=0.1,
            give_up_s=IMPORT_RATE_GRACE_S + 5,
        )
    attack_table.record(
        tried=f"slow client: import at {ROW_BYTES * 10} B/s (min {IMPORT_MIN_RATE} B/s "
        f"after {IMPORT_RATE_GRACE_S:g} s)",
        answer=trickled.answer(),
        watch=trickling,
    )
    with watch(ingest, "ingest") as stalling:
        stalled = await trickle(
            ingest,
            "/v1/leads/import?list=stalled",
            headers={**basic(WRITE_KEY), **CSV},
            pieces=iter([b"Email,Name\nann@stalled.example,Ann\n"]),
            interval_s=0.1,
            give_up_s=BODY_IDLE_TIMEOUT_S + 5,
        )
    attack_table.record(
        tried=f"slow client: import stalled after its first row (idle {BODY_IDLE_TIMEOUT_S:g} s)",
        answer=stalled.answer(),
        watch=stalling,
    )

    assert trickled.status == 408, trickled
    assert orjson.loads(trickled.body)["success"] is False
    assert IMPORT_RATE_GRACE_S * 0.9 <= trickled.elapsed_s <= IMPORT_RATE_GRACE_S + SLACK_S
    assert stalled.status == 408, stalled
    assert BODY_IDLE_TIMEOUT_S * 0.9 <= stalled.elapsed_s <= BODY_IDLE_TIMEOUT_S + SLACK_S
    assert_service_held(trickling, growth_mb=30)
    assert_service_held(stalling, growth_mb=30)


async def test_one_keys_trickling_imports_leave_another_key_its_import(
    patient_ingest: Pipeline, attack_table: AttackTable
) -> None:
    ingest = patient_ingest
    with watch(ingest, "ingest") as seen:
        holding = [
            asyncio.ensure_future(
                trickle(
                    ingest,
                    f"/v1/leads/import?list=holding-{n}",
                    headers={**basic(WRITE_KEY), **CSV},
                    pieces=lead_rows(f"hld{n}"),
                    interval_s=0.1,
                    give_up_s=IMPORT_RATE_GRACE_S + 5,
                )
            )
            for n in range(IMPORT_SLOTS_PER_KEY)
        ]
        await asyncio.sleep(0.5)  # both are being received
        async with httpx.AsyncClient(base_url=ingest.ingest_url, timeout=10) as client:
            one_more = await client.post(
                "/v1/leads/import",
                params={"list": "one-more"},
                headers={**basic(WRITE_KEY), **CSV},
                content=b"Email\nann@same-key.example\n",
            )
            other = await client.post(
                "/v1/leads/import",
                params={"list": "other-key"},
                headers={**basic(OTHER_KEY), **CSV},
                content=b"Email\nbob@other-key.example\n",
            )
        held = await asyncio.gather(*holding)
    attack_table.record(
        tried=f"slow client: {IMPORT_SLOTS_PER_KEY} trickling imports of key A, then one more "
        "of A and one of B",
        answer=f"one more of A: {one_more.status_code}; B: {other.status_code}; "
        f"trickling: {'/'.join(str(h.status) for h in held)}",
        watch=seen,
    )

    assert one_more.status_code == 429, one_more.text[:500]
    assert other.status_code == 200, other.text[:500]
    assert other.json()["leads"] == 1
    assert [h.status for h in held] == [408] * IMPORT_SLOTS_PER_KEY, held
    assert_service_held(seen, growth_mb=30)
