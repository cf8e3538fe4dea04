"""The router's routing API on the real PostgreSQL, served as the service shell serves its API
port (bearer tokens, scopes) and called over HTTP in process (ASGI): refusals by scope, drafts
refused with their line and field or over a stale live version, a rep changed and published in
one request, the reps listed, a scoring change's load previewed, and a draft simulated on the
stored MQLs to `done` with its counts, or cancelled.

Each test publishes its first routing version with a `routing_versions()` store of its own (a
process keeps one; each test has its own database, numbered from 1)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import shared.simulations
from services.router import simulation_runs
from services.router.handler import RouterHandler
from services.router.http import MAX_PREVIEW_BYTES, PREVIEW_AT_MOST, router_api
from services.router.routing_config import RoutingConfig
from services.router.routing_versions import routing_versions
from shared.config_versions import VersionedConfig
from shared.consumer import Message
from shared.contracts import LifecycleChanged, RoutingDecision, Stage
from shared.db import unit_of_work
from shared.http import create_api
from shared.secret_hashes import secret_hash
from shared.service_api import serve_clients, unauthenticated_routes
from shared.settings import ApiClient, ApiSettings
from shared.topics import LEADS_LIFECYCLE
from tests.fixtures.routing import TWO_TEAMS_YAML, decisions_in, release_settled
from tests.unit.builders import lifecycle_change, profile

WAIT_S = 20.0
CONSOLE, CRM, SIMULATOR = "c" * 43, "r" * 43, "s" * 43
CLIENTS = ApiSettings(
    clients={
        "console": ApiClient(
            token_sha256=secret_hash(CONSOLE),
            scopes=["routing:read", "routing:publish", "routing:simulate"],
        ),
        "crm": ApiClient(token_sha256=secret_hash(CRM), scopes=["leads:read", "routing:read"]),
        "simulator": ApiClient(token_sha256=secret_hash(SIMULATOR), scopes=["routing:simulate"]),
    }
)
EDITOR = {"Authorization": f"Bearer {CONSOLE}"}

ROUTING_YAML = TWO_TEAMS_YAML
ROUTING: dict[str, Any] = yaml.safe_load(ROUTING_YAML)


def rep_a_away_today() -> dict[str, Any]:
    """The routing with rep-a out of office from yesterday to tomorrow (UTC, the rep's zone)."""
    today = datetime.now(UTC).date()
    document = copy.deepcopy(ROUTING)
    document["teams"][0]["reps"][0]["out_of_office"] = [
        {
            "from": (today - timedelta(days=1)).isoformat(),
            "until": (today + timedelta(days=1)).isoformat(),
        }
    ]
    return document


def mql(lead: str, *, to_stage: Stage = Stage.MQL) -> LifecycleChanged:
    now = datetime.now(UTC)
    return lifecycle_change(
        transition_id=f"{lead}:{to_stage.value}:m",
        lead_id=lead,
        from_stage=Stage.KNOWN,
        to_stage=to_stage,
        at=now,
        received_at=now,
        profile=profile(email=f"{lead}@northwind-logistics.com", country="FR"),
    )


@dataclass
class Api:
    client: httpx.AsyncClient
    routing: VersionedConfig[RoutingConfig]
    sessions: async_sessionmaker[AsyncSession]
    db: asyncpg.Connection

    async def route(self, *changes: LifecycleChanged) -> list[RoutingDecision]:
        """One consumer batch under the live routing, as the router runs it, then the
        release of its nurture decisions (they settle first): the decisions sent, in order."""
        handler = RouterHandler(
            self.routing, sla_recheck=timedelta(minutes=5), backfill_horizon=timedelta(hours=72)
        )
        messages: list[Message[BaseModel]] = [
            Message(topic=LEADS_LIFECYCLE, partition=0, offset=n, key=None, value=change)
            for n, change in enumerate(changes)
        ]
        async with unit_of_work(self.sessions) as session:
            outputs = [*await handler(messages, session)]
        outputs += await release_settled(handler, self.sessions)
        return decisions_in(outputs)

    async def live(self) -> str:
        overview = await self.client.get("/v1/routing", headers=EDITOR)
        assert overview.status_code == 200, overview.text
        live: str = overview.json()["live"]
        return live

    async def versions(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM router.config_versions"))

    async def simulation_ended(self, simulation_id: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                answer = await self.client.get(
                    f"/v1/routing/simulations/{simulation_id}", headers=EDITOR
                )
                assert answer.status_code == 200, answer.text
                state: dict[str, Any] = answer.json()
                if state["status"] != "running":
                    return state
                await asyncio.sleep(0.05)


@pytest.fixture
async def api(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> AsyncIterator[Api]:
    """The router's routes on an app built as the service shell builds its API port, with the
    test routing published as version 1."""
    routing = routing_versions()
    async with unit_of_work(sessions) as session:
        saved = await routing.save(session, document=ROUTING, author="routing file", note="")
        await routing.publish(session, saved.version, by="routing file")
    simulations = shared.simulations.Simulations(schema="router", sessions=sessions)
    routers = router_api(sessions, routing=routing, simulations=simulations)
    assert unauthenticated_routes(routers) == []  # the shell would serve them
    app = create_api(title="leadflow router test", summary="routing routes")
    serve_clients(app, CLIENTS)
    for router in routers:
        app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=10) as client:
        yield Api(client=client, routing=routing, sessions=sessions, db=db)
    await simulations.close()


# ---- who may do what ---------------------------------------------------------------------------

SCOPED = [
    # (method, path, the scope it needs, a client without it)
    ("GET", "/v1/routing", "routing:read", SIMULATOR),
    ("POST", "/v1/routing/check", "routing:read", SIMULATOR),
    ("POST", "/v1/routing/versions", "routing:publish", CRM),
    ("POST", "/v1/routing/versions/1/publish", "routing:publish", CRM),
    ("POST", "/v1/routing/simulations", "routing:simulate", CRM),
    ("GET", "/v1/routing/reps", "routing:read", SIMULATOR),
    ("POST", "/v1/routing/reps/rep-a", "routing:publish", CRM),
    ("POST", "/v1/routing/preview", "routing:simulate", CRM),
    ("GET", "/v1/leads/lead-1/routing", "leads:read", CONSOLE),
]


@pytest.mark.parametrize(("method", "path", "scope", "without"), SCOPED)
async def test_each_route_answers_only_a_client_holding_its_scope(
    api: Api, method: str, path: str, scope: str, without: str
) -> None:
    nobody = await api.client.request(method, path, json={})
    lacking = await api.client.request(
        method, path, json={}, headers={"Authorization": f"Bearer {without}"}
    )

    assert nobody.status_code == 401
    assert lacking.status_code == 403
    assert lacking.json()["error"].endswith(f"lacks the scope {scope}")
    assert await api.versions() == 1, "a refused request changes nothing"


# ---- drafts ------------------------------------------------------------------------------------


async def test_a_bad_draft_is_refused_with_its_line_and_field_and_never_stored(api: Api) -> None:
    bad = ROUTING_YAML.replace("weight: 3", "weight: 0")
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "weight: 0" in text)

    checked = await api.client.post("/v1/routing/check", json={"yaml": bad}, headers=EDITOR)
    saved = await api.client.post(
        "/v1/routing/versions",
        json={"yaml": bad, "parent": "1", "publish": True, "note": "heavier rep-a"},
        headers=EDITOR,
    )

    for answer in (checked, saved):
        assert answer.status_code == 400
        assert answer.json()["error"].startswith(f"draft: line {line}: teams.0.reps.0.weight: ")
    assert await api.versions() == 1
    assert await api.live() == "1"


async def test_a_draft_published_over_a_stale_live_version_is_refused(api: Api) -> None:
    first = await api.client.post(
        "/v1/routing/versions",
        json={"document": rep_a_away_today(), "parent": "1", "publish": True, "by": "ada"},
        headers=EDITOR,
    )
    assert first.status_code == 201, first.text
    assert first.json()["publication"]["version"] == "2"

    stale = await api.client.post(
        "/v1/routing/versions",
        json={"document": ROUTING, "parent": "1", "publish": True, "by": "grace"},
        headers=EDITOR,
    )

    assert stale.status_code == 409
    assert (
        "version 2 was published since this draft started from version 1" in stale.json()["error"]
    )
    assert await api.live() == "2"


# ---- reps --------------------------------------------------------------------------------------


def rep_change(**fields: Any) -> dict[str, Any]:
    return {"note": "back from holiday", "by": "ada", "expected_live": "1", **fields}


async def test_a_rep_change_is_saved_from_the_live_version_and_published_over_it(api: Api) -> None:
    today = datetime.now(UTC).date()
    away = [{"from": today.isoformat(), "until": (today + timedelta(days=2)).isoformat()}]

    answer = await api.client.post(
        "/v1/routing/reps/rep-b",
        json=rep_change(out_of_office=away, weight=2, daily_cap=None),
        headers=EDITOR,
    )

    assert answer.status_code == 200, answer.text
    version, publication = answer.json()["version"], answer.json()["publication"]
    assert (version["version"], version["parent"], version["author"]) == (
        "2",
        "1",
        "ada via console",
    )
    assert (publication["version"], publication["previous"]) == ("2", "1")
    assert publication["note"] == "back from holiday"
    live = (await api.client.get("/v1/routing/versions/live", headers=EDITOR)).json()
    assert live["document"]["teams"][0]["reps"] == [
        ROUTING["teams"][0]["reps"][0],
        {**ROUTING["teams"][0]["reps"][1], "out_of_office": away, "weight": 2, "daily_cap": None},
    ]
    assert {k: v for k, v in live["document"].items() if k not in ("teams", "version")} == {
        k: v for k, v in ROUTING.items() if k not in ("teams", "version")
    }
    reps = (await api.client.get("/v1/routing/reps", headers=EDITOR)).json()
    assert [(r["id"], r["team"], r["weight"], r["away_today"]) for r in reps] == [
        ("rep-a", "sdr-emea", 3, False),
        ("rep-b", "sdr-emea", 2, True),
        ("rep-z", "sdr-other", 1, False),
    ]
    # the next batch routes under it: rep-b is away, so rep-a takes the territory's MQL
    (decision,) = await api.route(mql("lead-1"))
    assert decision.owner is not None
    assert (decision.owner.id, decision.routing_version) == ("rep-a", "2")


@pytest.mark.parametrize(
    ("rep_id", "body", "status", "error"),
    [
        ("rep-nobody", rep_change(active=False), 404, "the live routing has no rep 'rep-nobody'"),
        ("rep-a", rep_change(active=False, expected_live="0"), 409, "version 1 was published"),
        ("rep-a", rep_change(weight=0), 400, "rep rep-a: teams.0.reps.0.weight: Input should"),
        ("rep-a", rep_change(daily_cap=-1), 400, "teams.0.reps.0.daily_cap: Input should be"),
        ("rep-a", rep_change(weight="heavy"), 400, "body: weight: Input should be a valid int"),
        ("rep-a", rep_change(timezone="UTC"), 400, "body: timezone: Extra inputs are not"),
        ("rep-a", {"active": False, "note": "", "by": "ada"}, 400, "body: expected_live: Field"),
    ],
)
async def test_a_rep_change_that_cannot_be_made_is_refused_and_publishes_nothing(
    api: Api, rep_id: str, body: dict[str, Any], status: int, error: str
) -> None:
    answer = await api.client.post(f"/v1/routing/reps/{rep_id}", json=body, headers=EDITOR)

    assert answer.status_code == status, answer.text
    assert error in answer.json()["error"]
    assert await api.versions() == 1
    assert await api.live() == "1"


async def test_a_rep_change_over_a_version_published_since_is_refused(api: Api) -> None:
    made = await api.client.post(
        "/v1/routing/reps/rep-a", json=rep_change(active=False), headers=EDITOR
    )
    assert made.status_code == 200, made.text

    again = await api.client.post(
        "/v1/routing/reps/rep-z", json=rep_change(weight=5), headers=EDITOR
    )

    assert again.status_code == 409
    assert (
        "version 2 was published since this draft started from version 1" in again.json()["error"]
    )
    assert (await api.versions(), await api.live()) == (2, "2")


async def test_a_rep_change_too_large_to_be_one_is_refused(api: Api) -> None:
    answer = await api.client.post(
        "/v1/routing/reps/rep-a", content=b"{" + b" " * 70_000 + b"}", headers=EDITOR
    )

    assert answer.status_code == 413


# ---- the load preview --------------------------------------------------------------------------


async def test_a_preview_counts_gained_and_lost_leads_per_team_and_rep(api: Api) -> None:
    """`gained`: a nurtured lead that would become MQL, routed now from empty loads; `lost`: an
    MQL whose open decision's owner would lose it; ids the router never saw are `unknown`."""
    decided = await api.route(mql("nurtured", to_stage=Stage.LEAD), mql("routed"))
    assert [d.route for d in decided] == ["sdr", "nurture"]  # the nurture one once it settled
    assert decided[0].owner is not None
    assert decided[0].owner.id == "rep-a"

    answer = await api.client.post(
        "/v1/routing/preview",
        json={"gained": ["nurtured", "never-seen", "nurtured"], "lost": ["routed", "nobody"]},
        headers=EDITOR,
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["routing_version"] == "1"
    assert preview["gained"] == {"leads": 2, "unknown": 1}  # a lead listed twice counts once
    assert preview["lost"] == {"leads": 2, "unknown": 1}
    assert preview["teams"] == [{"team": "sdr-emea", "gained": 1, "lost": 1}]
    assert preview["reps"] == [
        {"rep_id": "rep-a", "name": "Rep A", "team": "sdr-emea", "gained": 1, "lost": 1}
    ]
    assert preview["queues"] == []
    assert preview["gained_not_to_sales"] == 0


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"gained": [f"l-{n}" for n in range(PREVIEW_AT_MOST + 1)]}, 400, "body: gained: List"),
        ({"lost": [""]}, 400, "body: lost.0: String should have at least 1 character"),
        ({"gained": "lead-1"}, 400, "body: gained: Input should be a valid array"),
        ({"won": []}, 400, "body: won: Extra inputs are not permitted"),
    ],
)
async def test_a_preview_of_the_wrong_shape_is_refused(
    api: Api, body: dict[str, Any], status: int, error: str
) -> None:
    answer = await api.client.post("/v1/routing/preview", json=body, headers=EDITOR)

    assert answer.status_code == status
    assert answer.json()["error"].startswith(error)


async def test_a_preview_body_too_large_is_refused_unread(api: Api) -> None:
    answer = await api.client.post(
        "/v1/routing/preview", content=b" " * (MAX_PREVIEW_BYTES + 1), headers=EDITOR
    )

    assert answer.status_code == 413


# ---- simulations -------------------------------------------------------------------------------


async def test_a_simulation_replays_the_recent_mqls_through_a_draft_to_done(api: Api) -> None:
    """Four MQLs of the territory routed under version 1 (rep-a, rep-a, rep-b, rep-a), replayed
    through a draft with rep-a out of office: three leads get another owner. A nurture
    decision, a reassignment, a decision older than 30 days and one stored before the router
    kept changes are not replayed (the last is counted as skipped)."""
    decided = await api.route(*(mql(f"lead-{n}") for n in range(4)), mql("n", to_stage=Stage.LEAD))
    assert [d.owner.id if d.owner else None for d in decided] == [
        "rep-a",
        "rep-a",
        "rep-b",
        "rep-a",
        None,
    ]
    stored = await api.db.fetchrow(
        "SELECT payload, change FROM router.decisions WHERE lead_id = 'lead-0'"
    )
    await api.db.execute(
        """
        INSERT INTO router.decisions
            (decision_id, transition_id, lead_id, route, decided_at, payload, change, supersedes)
        VALUES ('old', 'old:mql', 'old', 'sdr', now() - interval '40 days', $1::jsonb, $2::jsonb,
                NULL),
               ('before-0005', 'b:mql', 'b', 'sdr', now() - interval '1 day', $1::jsonb, NULL,
                NULL),
               ('reassigned', 'lead-0:mql:m', 'lead-0', 'sdr', now(), $1::jsonb, $2::jsonb,
                (SELECT decision_id FROM router.decisions WHERE lead_id = 'lead-0'
                  AND supersedes IS NULL))
        """,
        stored["payload"],
        stored["change"],
    )

    started = await api.client.post(
        "/v1/routing/simulations",
        json={"document": rep_a_away_today(), "by": "ada"},
        headers=EDITOR,
    )
    assert started.status_code == 202, started.text
    state = await api.simulation_ended(started.json()["id"])

    assert state["status"] == "done", state
    assert state["progress"] == {"done": 4, "total": 4}
    result = state["result"]
    assert result["live_version"] == "1"
    assert (result["replayed"], result["skipped_without_change"], result["unreadable"]) == (4, 1, 0)
    assert result["limited"] is False
    assert result["reps"] == [
        {"rep_id": "rep-a", "name": "Rep A", "team": "sdr-emea", "live": 3, "draft": 0},
        {"rep_id": "rep-b", "name": "Rep B", "team": "sdr-emea", "live": 1, "draft": 4},
    ]
    assert result["teams"] == [{"team": "sdr-emea", "live": 4, "draft": 4}]
    assert result["owner_changes"] == 3
    # one batch decided the four at one instant: they are replayed in decision id order
    changes = result["changes"]
    assert [(c["live"]["owner"], c["draft"]["owner"]) for c in changes] == [("rep-a", "rep-b")] * 3
    assert {c["lead_id"] for c in changes} < {f"lead-{n}" for n in range(4)}
    assert all(c["email"] == f"{c['lead_id']}@northwind-logistics.com" for c in changes)
    assert await api.versions() == 1, "a simulation stores no version"


async def test_a_simulation_replays_only_the_newest_mqls_and_says_it_left_the_oldest_out(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulation_runs, "AT_MOST", 2)
    for n in range(3):  # one batch each: three instants, oldest first
        await api.route(mql(f"lead-{n}"))

    started = await api.client.post(
        "/v1/routing/simulations", json={"document": rep_a_away_today()}, headers=EDITOR
    )
    assert started.status_code == 202, started.text
    state = await api.simulation_ended(started.json()["id"])

    assert state["status"] == "done", state
    result = state["result"]
    assert (result["replayed"], result["limited"]) == (2, True)
    # replayed from empty loads: lead-1 to rep-a under live (lead-0 was left out)
    assert [(c["lead_id"], c["live"]["owner"]) for c in result["changes"]] == [
        ("lead-1", "rep-a"),
        ("lead-2", "rep-a"),
    ]


async def test_a_running_simulation_can_be_cancelled(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One change per chunk and progress written after each: the cancel lands at the next."""
    monkeypatch.setattr(simulation_runs, "CHUNK", 1)
    monkeypatch.setattr(shared.simulations, "PROGRESS_EVERY_S", 0.0)
    await api.db.execute(
        """
        INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, decided_at,
                                      payload, change)
        SELECT 'd-' || n, 't-' || n, 'lead-' || n, 'sdr', now() - make_interval(secs => n),
               '{}'::jsonb, jsonb_set($1::jsonb, '{lead_id}', to_jsonb('lead-' || n))
          FROM generate_series(1, 500) AS n
        """,
        mql("template").model_dump_json(),
    )

    started = await api.client.post(
        "/v1/routing/simulations", json={"document": ROUTING}, headers=EDITOR
    )
    assert started.status_code == 202, started.text
    cancelled = await api.client.delete(
        f"/v1/routing/simulations/{started.json()['id']}", headers=EDITOR
    )
    assert cancelled.status_code == 200
    state = await api.simulation_ended(started.json()["id"])

    assert state["status"] == "cancelled"
    assert state["progress"]["total"] == 500
    assert state["progress"]["done"] < 500
    assert state["result"] is None
