"""One versioned kind's HTTP routes (`shared.config_api`) on the real PostgreSQL, served the way a
service serves its API (`shared.service_api`: bearer tokens of configured clients, scopes) and
called over HTTP in process (ASGI): drafts saved, refused with their line and field, published
only over the version they started from, rolled back; simulations started, polled, refused
while one runs, cancelled; bodies that are too large or not JSON refused.

Each test creates a scratch schema with `config_versions_ddl` and `simulations_ddl` in its own
database; the kind is a small test model ("playbook") under the rules scopes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import shared.simulations
from shared.config_api import MAX_BODY_BYTES, MAX_TEXT, ConfigRoutes, config_api
from shared.config_files import ConfigFileError, parse_yaml_document
from shared.config_versions import VersionedConfig, config_versions_ddl
from shared.http import create_api
from shared.secret_hashes import secret_hash
from shared.service_api import serve_clients, unauthenticated_routes
from shared.settings import ApiClient, ApiSettings
from shared.simulations import Progress, Simulations, simulations_ddl

SCHEMA = "config_api_test"
NAME = "playbook"
V1 = f"/v1/{NAME}"
WAIT_S = 10.0

CONSOLE, CRM, SIMULATOR = "c" * 43, "r" * 43, "s" * 43
CLIENTS = ApiSettings(
    clients={
        "console": ApiClient(
            token_sha256=secret_hash(CONSOLE),
            scopes=["rules:read", "rules:publish", "rules:simulate"],
        ),
        "crm": ApiClient(token_sha256=secret_hash(CRM), scopes=["rules:read"]),
        "simulator": ApiClient(token_sha256=secret_hash(SIMULATOR), scopes=["rules:simulate"]),
    }
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


EDITOR = bearer(CONSOLE)


class Play(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    points: int


class Playbook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    plays: list[Play]
    regions: dict[str, list[str]] = {}


class PlaybookError(ConfigFileError):
    """A playbook that cannot be used."""


DRAFT = """\
version: q4-playbook
plays:
  - name: demo
    points: 30
  - name: webinar
    points: 10
"""


def document(points: int = 30) -> dict[str, Any]:
    return {"version": "form", "plays": [{"name": "demo", "points": points}]}


class Simulator:
    """The kind's simulation: counts the draft's plays and points. Held (replaying chunks,
    reporting after each) until `released` when `hold` is set."""

    def __init__(self) -> None:
        self.hold = False
        self.started = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self, candidate: Playbook, progress: Progress) -> dict[str, Any]:
        total = len(candidate.plays)
        await progress.update(done=0, total=total, force=True)
        self.started.set()
        while self.hold and not self.released.is_set():
            await asyncio.sleep(0.01)
            await progress.update(done=0, total=total)
        await progress.update(done=total, total=total, force=True)
        return {"plays": total, "points": sum(play.points for play in candidate.plays)}


@dataclass
class Api:
    client: httpx.AsyncClient
    simulator: Simulator
    db: asyncpg.Connection

    async def save(self, body: dict[str, Any], token: str = CONSOLE) -> httpx.Response:
        return await self.client.post(f"{V1}/versions", json=body, headers=bearer(token))

    async def publish(self, version: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(
            f"{V1}/versions/{version}/publish", json=body or {}, headers=EDITOR
        )

    async def overview(self) -> dict[str, Any]:
        answer = await self.client.get(V1, headers=EDITOR)
        assert answer.status_code == 200, answer.text
        overview: dict[str, Any] = answer.json()
        return overview

    async def stored(self) -> tuple[int, int]:
        """How many versions and publications the kind has."""
        versions = await self.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.config_versions")
        published = await self.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.config_publications")
        return versions, published

    async def simulation_done(self, simulation_id: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                answer = await self.client.get(f"{V1}/simulations/{simulation_id}", headers=EDITOR)
                assert answer.status_code == 200, answer.text
                state: dict[str, Any] = answer.json()
                if state["status"] != "running":
                    return state
                await asyncio.sleep(0.02)


@pytest.fixture
async def api(
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    """The kind's routes on an app built as the service shell builds its API port."""
    monkeypatch.setattr(shared.simulations, "PROGRESS_EVERY_S", 0.0)  # cancels land at once
    await db.execute(f"CREATE SCHEMA {SCHEMA}")
    for statement in config_versions_ddl(SCHEMA) + simulations_ddl(SCHEMA):
        await db.execute(statement)
    simulator = Simulator()
    routes = ConfigRoutes(
        name=NAME,
        config=VersionedConfig(
            schema=SCHEMA, kind=NAME, parse=Playbook.model_validate, stamp="version"
        ),
        model=Playbook,
        error=PlaybookError,
        scopes=("rules:read", "rules:publish", "rules:simulate"),
        simulate=simulator,
    )
    simulations = Simulations(schema=SCHEMA, sessions=sessions)
    router = config_api(routes, sessions=sessions, simulations=simulations)
    assert unauthenticated_routes([router]) == []  # the shell would serve it
    app = create_api(title="leadflow test", summary="config routes")
    serve_clients(app, CLIENTS)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=10) as client:
        yield Api(client=client, simulator=simulator, db=db)
    simulator.released.set()
    await simulations.close()


# ---- who may do what ---------------------------------------------------------------------------

SOME_ID = str(uuid.uuid4())
SCOPED = [
    # (method, path, the scope it needs, a client without it)
    ("GET", V1, "rules:read", SIMULATOR),
    ("GET", f"{V1}/versions/live", "rules:read", SIMULATOR),
    ("POST", f"{V1}/check", "rules:read", SIMULATOR),
    ("POST", f"{V1}/versions", "rules:publish", CRM),
    ("POST", f"{V1}/versions/1/publish", "rules:publish", CRM),
    ("POST", f"{V1}/simulations", "rules:simulate", CRM),
    ("GET", f"{V1}/simulations/latest", "rules:simulate", CRM),
    ("GET", f"{V1}/simulations/{SOME_ID}", "rules:simulate", CRM),
    ("DELETE", f"{V1}/simulations/{SOME_ID}", "rules:simulate", CRM),
]


async def test_every_route_needs_a_known_client_with_its_scope(api: Api) -> None:
    body = {"yaml": DRAFT, "publish": True}
    for method, path, scope, lacking in SCOPED:  # one database for the whole table
        refusals = []
        for headers in ({}, bearer("not-a-token"), bearer(CONSOLE[:-1])):
            refusals.append(await api.client.request(method, path, json=body, headers=headers))
        assert {answer.status_code for answer in refusals} == {401}, (method, path)
        assert refusals[0].headers["www-authenticate"] == "Bearer"
        forbidden = await api.client.request(method, path, json=body, headers=bearer(lacking))
        assert forbidden.status_code == 403, (method, path)
        assert forbidden.json() == {"error": f"client {'crm' if lacking == CRM else 'simulator'!r} "
                                              f"lacks the scope {scope}"}  # fmt: skip
    assert await api.stored() == (0, 0)  # no refused request saved or published anything
    assert await api.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.simulations") == 0
    # The console holds every scope.
    assert (await api.client.get(V1, headers=EDITOR)).status_code == 200
    assert (await api.client.post(f"{V1}/check", json=body, headers=EDITOR)).status_code == 200


# ---- saving drafts -----------------------------------------------------------------------------


async def test_a_yaml_draft_is_saved_as_the_next_version_with_its_version_stamped(
    api: Api,
) -> None:
    saved = await api.save({"yaml": DRAFT, "note": "Q4 plays"})
    assert saved.status_code == 201, saved.text
    answer = saved.json()
    assert answer["publication"] is None  # saved, not published
    version = answer["version"]
    assert (version["version"], version["parent"], version["author"], version["note"]) == (
        "1",
        None,
        "console",
        "Q4 plays",
    )
    assert version["document"] is None
    stored = (await api.client.get(f"{V1}/versions/1", headers=EDITOR)).json()
    assert stored["document"] == {
        "version": "1",  # "q4-playbook" was the draft's label: the version's id replaces it
        "plays": [{"name": "demo", "points": 30}, {"name": "webinar", "points": 10}],
    }
    assert "version: '1'\n" in stored["yaml"]
    child = await api.save({"yaml": DRAFT.replace("30", "35"), "parent": "1"})
    assert (child.status_code, child.json()["version"]["version"]) == (201, "2")
    overview = await api.overview()
    assert overview["live"] is None
    assert [(v["version"], v["parent"]) for v in overview["versions"]] == [("2", "1"), ("1", None)]


async def test_a_draft_without_a_version_label_is_saved_and_stamped(api: Api) -> None:
    unlabelled = DRAFT.removeprefix("version: q4-playbook\n")
    bodies: list[dict[str, Any]] = [{"yaml": unlabelled}, {"document": {"plays": []}}]
    for body in bodies:
        saved = await api.save(body)
        assert saved.status_code == 201, saved.text
        number = saved.json()["version"]["version"]
        stored = (await api.client.get(f"{V1}/versions/{number}", headers=EDITOR)).json()
        assert stored["document"]["version"] == number


@pytest.mark.parametrize(
    ("draft", "problems"),
    [
        pytest.param(
            "version: q4\nplays:\n  - name: demo\n    points: lots\n"
            "  - {name: webinar, points: 10, colour: red}\n",
            [
                "line 4: plays.0.points: Input should be a valid integer",
                "line 5: plays.1.colour: Extra inputs are not permitted",
            ],
            id="labelled",  # the lines are the draft's own
        ),
        pytest.param(
            "plays:\n  - name: demo\n    points: lots\n"
            "  - {name: webinar, points: 10, colour: red}\n",
            [
                "line 3: plays.0.points: Input should be a valid integer",
                "line 4: plays.1.colour: Extra inputs are not permitted",
            ],
            id="unlabelled",  # the version is added when saved: still the draft's own lines
        ),
        pytest.param(
            "version: q4\nregions:\n  emea: &eu [FR, DE]\n  dach: *eu\nplays: []\n",
            ["line 3: regions.emea: anchors and aliases"],
            id="anchor",  # refused by the loader, at its line
        ),
    ],
)
async def test_a_yaml_draft_with_errors_answers_400_naming_each_line_and_field_and_stores_nothing(
    api: Api, draft: str, problems: list[str]
) -> None:
    for path in ("/versions", "/check", "/simulations"):
        refused = await api.client.post(f"{V1}{path}", json={"yaml": draft}, headers=EDITOR)
        assert refused.status_code == 400, (path, refused.text)
        error = refused.json()["error"]
        assert error.startswith("draft: "), error
        for problem in problems:
            assert problem in error, error
    assert await api.stored() == (0, 0)
    assert await api.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.simulations") == 0


async def test_a_document_draft_with_errors_answers_400_naming_each_dotted_field(
    api: Api,
) -> None:
    draft = {
        "plays": [
            {"name": "demo", "points": "lots"},
            {"name": "webinar", "points": 10, "colour": "red"},
        ],
        "regions": {"emea": "FR"},
    }
    refused = await api.save({"document": draft, "publish": True})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error.startswith("draft: plays.0.points: Input should be a valid integer"), error
    assert "; plays.1.colour: Extra inputs are not permitted" in error
    assert "; regions.emea: Input should be a valid list" in error
    assert "line" not in error  # a form maps the dotted field to its input
    assert await api.stored() == (0, 0)


async def test_a_parent_that_is_not_a_version_answers_400_and_stores_nothing(api: Api) -> None:
    refused = await api.save({"yaml": DRAFT, "parent": "7"})
    assert refused.status_code == 400
    assert "parent version '7' does not exist" in refused.json()["error"]
    assert await api.stored() == (0, 0)


async def test_checking_a_draft_answers_its_document_and_stores_nothing(api: Api) -> None:
    checked = await api.client.post(f"{V1}/check", json={"yaml": DRAFT}, headers=bearer(CRM))
    assert checked.status_code == 200
    answer = checked.json()
    assert answer["valid"] is True
    assert answer["document"]["plays"] == [
        {"name": "demo", "points": 30},
        {"name": "webinar", "points": 10},
    ]
    assert "version" in answer["document"]  # a label until saved; the store stamps the id
    assert await api.stored() == (0, 0)


# ---- publishing --------------------------------------------------------------------------------


async def test_saving_and_publishing_over_a_stale_parent_answers_409_and_publishes_nothing(
    api: Api,
) -> None:
    first = await api.save({"yaml": DRAFT, "publish": True})  # nothing live: expects nothing
    assert first.status_code == 201, first.text
    assert first.json()["publication"]["previous"] is None
    second = await api.save({"document": document(40), "parent": "1", "publish": True})
    assert second.status_code == 201, second.text
    assert (await api.overview())["live"] == "2"

    stale = await api.save({"document": document(50), "parent": "1", "publish": True})
    assert stale.status_code == 409
    assert (
        "version 2 was published since this draft started from version 1" in (stale.json()["error"])
    )
    assert (await api.overview())["live"] == "2"
    assert await api.stored() == (2, 2)  # the refused draft was not even saved


async def test_two_editors_publishing_from_the_same_version_the_second_gets_409(
    api: Api,
) -> None:
    assert (await api.save({"yaml": DRAFT, "publish": True})).status_code == 201
    # One after the other ...
    ada = await api.save({"document": document(31), "parent": "1", "publish": True, "by": "ada"})
    grace = await api.save(
        {"document": document(32), "parent": "1", "publish": True, "by": "grace"}
    )
    assert (ada.status_code, grace.status_code) == (201, 409)
    assert (await api.overview())["live"] == "2"
    # ... and at the same time: exactly one of them publishes.
    answers = await asyncio.gather(
        *(
            api.save({"document": document(p), "parent": "2", "publish": True, "by": f"e{p}"})
            for p in (33, 34)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409]
    [won] = [a.json() for a in answers if a.status_code == 201]
    assert (await api.overview())["live"] == won["version"]["version"] == "3"
    assert await api.stored() == (3, 3)


async def test_publishing_an_earlier_version_is_a_rollback_shown_in_the_history(
    api: Api,
) -> None:
    for points in (10, 20):
        assert (await api.save({"document": document(points), "publish": True,
                                "parent": (await api.overview())["live"]})).status_code == 201  # fmt: skip
    rolled_back = await api.publish("1", {"note": "2 misroutes"})
    assert rolled_back.status_code == 200, rolled_back.text
    assert (rolled_back.json()["version"], rolled_back.json()["previous"]) == ("1", "2")
    overview = await api.overview()
    assert overview["live"] == "1"
    assert [(p["version"], p["previous"], p["note"]) for p in overview["publications"]] == [
        ("1", "2", "2 misroutes"),
        ("2", "1", ""),
        ("1", None, ""),
    ]
    live = (await api.client.get(f"{V1}/versions/live", headers=EDITOR)).json()
    assert live["version"] == "1"
    assert live["document"]["plays"] == [{"name": "demo", "points": 10}]


async def test_publishing_a_version_over_an_expected_live_version_that_changed_answers_409(
    api: Api,
) -> None:
    for points in (10, 20, 30):
        assert (await api.save({"document": document(points)})).status_code == 201
    assert (await api.publish("1", {"expected_live": None})).status_code == 200
    stale = await api.publish("3", {"expected_live": "2"})
    assert stale.status_code == 409
    assert "version 1 was published" in stale.json()["error"]
    assert (await api.overview())["live"] == "1"
    assert (await api.publish("3", {"expected_live": "1"})).status_code == 200
    assert (await api.overview())["live"] == "3"


async def test_publishing_a_version_that_does_not_exist_answers_404(api: Api) -> None:
    assert (await api.save({"document": document()})).status_code == 201
    for version in ("2", "live", "x"):
        missing = await api.publish(version)
        assert missing.status_code == 404, version
    assert await api.stored() == (1, 0)


async def test_who_is_recorded_as_the_client_or_as_the_person_via_the_client(api: Api) -> None:
    saved = await api.save({"yaml": DRAFT, "by": "ada@lumenboard.io", "publish": True})
    assert saved.json()["version"]["author"] == "ada@lumenboard.io via console"
    assert saved.json()["publication"]["published_by"] == "ada@lumenboard.io via console"
    assert (await api.save({"document": document(), "parent": "1"})).json()["version"][
        "author"
    ] == "console"
    by_person = await api.publish("2", {"by": "grace@lumenboard.io"})
    assert by_person.json()["published_by"] == "grace@lumenboard.io via console"
    by_client = await api.publish("1")
    assert by_client.json()["published_by"] == "console"
    versions = (await api.overview())["versions"]
    assert [v["author"] for v in versions] == ["console", "ada@lumenboard.io via console"]


async def test_the_live_version_answers_its_document_and_yaml_that_reads_back_to_it(
    api: Api,
) -> None:
    nothing = await api.client.get(f"{V1}/versions/live", headers=EDITOR)
    assert nothing.status_code == 404
    regions = {"emea": ["FR", "DE"], "dach": ["FR", "DE"], "no": ["NO"]}  # repeats, "NO"
    draft = {"document": {**document(), "regions": regions}, "publish": True}
    assert (await api.save(draft)).status_code == 201
    live = await api.client.get(f"{V1}/versions/live", headers=bearer(CRM))
    assert live.status_code == 200
    answer = live.json()
    assert (answer["version"], answer["kind"]) == ("1", NAME)
    assert answer["document"] == {**document(), "version": "1", "regions": regions}
    read_back, parsed = parse_yaml_document(
        answer["yaml"], Playbook, source="live", error=PlaybookError
    )
    assert read_back == answer["document"]
    assert parsed == Playbook.model_validate(answer["document"])
    # The YAML is a draft the editor can save again as it is.
    again = await api.save({"yaml": answer["yaml"], "parent": "1"})
    assert again.status_code == 201, again.text
    stored = (await api.client.get(f"{V1}/versions/2", headers=EDITOR)).json()
    assert stored["document"] == {**answer["document"], "version": "2"}


# ---- simulations -------------------------------------------------------------------------------


async def test_a_simulation_starts_with_202_and_is_polled_to_its_result(api: Api) -> None:
    nothing = await api.client.get(f"{V1}/simulations/latest", headers=EDITOR)
    assert nothing.status_code == 404
    started = await api.client.post(
        f"{V1}/simulations", json={"yaml": DRAFT, "by": "ada"}, headers=EDITOR
    )
    assert started.status_code == 202, started.text
    state = started.json()
    assert (state["status"], state["kind"], state["requested_by"]) == (
        "running",
        NAME,
        "ada via console",
    )
    done = await api.simulation_done(state["id"])
    assert (done["status"], done["result"], done["error"]) == (
        "done",
        {"plays": 2, "points": 40},
        None,
    )
    assert done["progress"] == {"done": 2, "total": 2}
    latest = await api.client.get(f"{V1}/simulations/latest", headers=EDITOR)
    assert latest.json() == done
    assert await api.stored() == (0, 0)  # a simulation saves no version


async def test_a_second_simulation_while_one_runs_answers_409_and_a_delete_cancels_it(
    api: Api,
) -> None:
    api.simulator.hold = True
    started = await api.client.post(f"{V1}/simulations", json={"yaml": DRAFT}, headers=EDITOR)
    assert started.status_code == 202
    simulation_id = started.json()["id"]
    async with asyncio.timeout(WAIT_S):
        await api.simulator.started.wait()

    busy = await api.client.post(f"{V1}/simulations", json={"document": document()}, headers=EDITOR)
    assert busy.status_code == 409
    assert "a simulation is already running (started by console" in busy.json()["error"]

    cancelled = await api.client.delete(f"{V1}/simulations/{simulation_id}", headers=EDITOR)
    assert cancelled.status_code == 200
    assert cancelled.json()["cancel_requested"] is True
    ended = await api.simulation_done(simulation_id)
    assert (ended["status"], ended["result"]) == ("cancelled", None)
    assert not api.simulator.released.is_set()  # it ended by the cancel, not by finishing

    api.simulator.hold = False
    again = await api.client.post(f"{V1}/simulations", json={"yaml": DRAFT}, headers=EDITOR)
    assert again.status_code == 202
    assert (await api.simulation_done(again.json()["id"]))["status"] == "done"


async def test_an_unknown_simulation_answers_404(api: Api) -> None:
    for simulation_id in (str(uuid.uuid4()), "not-a-uuid"):  # unknown / malformed
        for method in ("GET", "DELETE"):
            answer = await api.client.request(
                method, f"{V1}/simulations/{simulation_id}", headers=EDITOR
            )
            assert answer.status_code == 404, (method, simulation_id)
            assert NAME in answer.json()["error"]


# ---- bodies ------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_answers_413_and_stores_nothing(api: Api) -> None:
    assert (await api.save({"document": document()})).status_code == 201
    huge = orjson.dumps({"yaml": "#" * MAX_BODY_BYTES})
    assert len(huge) > MAX_BODY_BYTES
    for path in ("/versions", "/check", "/simulations"):
        refused = await api.client.post(f"{V1}{path}", content=huge, headers=EDITOR)
        assert refused.status_code == 413, path
        assert f"at most {MAX_BODY_BYTES} bytes" in refused.json()["error"]
    long_note = orjson.dumps({"note": "n" * (4 * MAX_TEXT)})
    refused = await api.client.post(f"{V1}/versions/1/publish", content=long_note, headers=EDITOR)
    assert refused.status_code == 413
    assert await api.stored() == (1, 0)
    assert await api.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.simulations") == 0


BAD_DRAFTS: list[tuple[bytes, str]] = [
    # (the body, what the 400 says)
    (DRAFT.encode(), "the body is JSON"),  # the YAML itself, not wrapped in JSON
    (b"", "the body is JSON"),  # empty
    (b"[1, 2]", "the body is a JSON object"),  # JSON, not an object
    (orjson.dumps({"note": "no draft"}), 'give the draft as "yaml"'),  # neither
    (orjson.dumps({"yaml": DRAFT, "document": document()}), 'give the draft as "yaml"'),  # both
    (orjson.dumps({"yaml": 3}), '"yaml" is the document as YAML text'),
    (orjson.dumps({"document": [document()]}), '"document" is a JSON object'),
    (orjson.dumps({"yaml": DRAFT, "note": 5}), "note: a string of at most"),
    (orjson.dumps({"yaml": DRAFT, "by": "b" * (MAX_TEXT + 1)}), "by: a string of at most"),
    (orjson.dumps({"yaml": DRAFT, "parent": 1}), "parent: a string of at most"),
    (orjson.dumps({"yaml": "version: q4\nplays: ["}), "draft: "),  # YAML that does not parse
    (orjson.dumps({"yaml": "- a list\n"}), "draft: "),  # YAML, but not a mapping
]


async def test_a_body_that_is_no_json_draft_answers_400_with_the_reason(api: Api) -> None:
    for body, reason in BAD_DRAFTS:  # one database for the whole table
        for path in ("/versions", "/check", "/simulations"):
            refused = await api.client.post(f"{V1}{path}", content=body, headers=EDITOR)
            assert refused.status_code == 400, (body[:40], path, refused.text)
            assert reason in refused.json()["error"], (body[:40], path)
    assert await api.stored() == (0, 0)
    assert await api.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.simulations") == 0


async def test_a_publish_body_that_is_not_a_short_json_object_answers_400(api: Api) -> None:
    assert (await api.save({"document": document()})).status_code == 201
    for body in (
        b"publish it",  # not JSON
        b"[]",  # not an object
        orjson.dumps({"note": 5}),  # a note that is not text
        orjson.dumps({"expected_live": 1}),  # a version that is not text
    ):
        refused = await api.client.post(f"{V1}/versions/1/publish", content=body, headers=EDITOR)
        assert refused.status_code == 400, body
        assert "the body is JSON" in refused.json()["error"]
    assert await api.stored() == (1, 0)
    # No body at all is an operator's plain publish.
    empty = await api.client.post(f"{V1}/versions/1/publish", headers=EDITOR)
    assert empty.status_code == 200
