"""The routing simulation's core (services/router/simulation.py): recent MQLs replayed through
the live routing and a draft, each at its original decision time, with loads simulated from
empty per routing; and the load preview of a scoring change (load_preview.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.router.assignment import Assignment
from services.router.load_preview import CurrentOwner, preview_load
from services.router.routing_config import RoutingConfig
from services.router.simulation import (
    EXAMPLES,
    DecidedChange,
    Outcome,
    Replay,
    SimulatedLoads,
    outcome_of,
)
from shared.contracts import Stage
from tests.unit.builders import NOW, lifecycle_change, profile, routing_config

pytestmark = pytest.mark.unit

LIVE = routing_config()  # NOW: Monday 10:15 in Paris; sdr-emea Ada (weight 2), Grace, Alan
NIGHT = NOW + timedelta(hours=12)  # Monday 22:15 in Paris: sdr-emea is closed


def emea_mql(n: int, *, at: datetime = NOW, **fields: Any) -> DecidedChange:
    """The n-th MQL from France (territory emea), decided at `at`."""
    change = lifecycle_change(
        transition_id=f"lead-{n}:mql:m",
        lead_id=f"lead-{n}",
        profile=profile(email=f"lead-{n}@northwind-logistics.com", country="FR"),
        **fields,
    )
    return DecidedChange(change=change, decided_at=at)


def with_rep(config: RoutingConfig, rep_id: str, **fields: Any) -> RoutingConfig:
    """`config` with one rep's fields replaced (a draft)."""
    document = config.model_dump(mode="json", by_alias=True)
    for team in document["teams"]:
        team["reps"] = [{**r, **fields} if r["id"] == rep_id else r for r in team["reps"]]
    return RoutingConfig.model_validate(document)


def replay(draft: RoutingConfig, changes: list[DecidedChange]) -> dict[str, Any]:
    simulation = Replay(live=LIVE, draft=draft)
    simulation.feed(changes)
    return simulation.result()


def counts(result: dict[str, Any], side: str) -> dict[str, int]:
    """Leads per owner (or queue, or "not to sales") on one side."""
    found = {row["rep_id"]: row[side] for row in result["reps"] if row[side]}
    found |= {row["queue"]: row[side] for row in result["queues"] if row[side]}
    if result["not_to_sales"][side]:
        found["not to sales"] = result["not_to_sales"][side]
    return found


# ---- what each routing would have done ---------------------------------------------------------


def test_the_live_routing_replayed_against_itself_changes_no_owner() -> None:
    result = replay(LIVE, [emea_mql(n, at=NOW + timedelta(minutes=n)) for n in range(6)])

    assert result["replayed"] == 6
    assert result["owner_changes"] == 0
    assert result["changes"] == []
    assert (
        counts(result, "live")
        == counts(result, "draft")
        == {
            "rep-ada": 3,  # weight 2 of 4
            "rep-grace": 2,
            "rep-alan": 1,
        }
    )
    assert result["teams"] == [{"team": "sdr-emea", "live": 6, "draft": 6}]


@pytest.mark.parametrize(
    ("draft", "at", "live_counts", "draft_counts"),
    [
        pytest.param(
            with_rep(
                LIVE, "rep-ada", out_of_office=[{"from": "2026-03-02", "until": "2026-03-06"}]
            ),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"rep-grace": 2, "rep-alan": 2},
            id="a rep out of office that day gets none",
        ),
        pytest.param(
            with_rep(
                LIVE, "rep-ada", out_of_office=[{"from": "2026-03-03", "until": "2026-03-06"}]
            ),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            id="an absence from the next day changes nothing that day",
        ),
        pytest.param(
            with_rep(LIVE, "rep-ada", weight=1),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            id="equal weights: Ada first, then file order, then Ada again",
        ),
        pytest.param(
            with_rep(with_rep(LIVE, "rep-grace", active=False), "rep-alan", active=False),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"rep-ada": 4},
            id="inactive reps get none",
        ),
        pytest.param(
            with_rep(LIVE, "rep-ada", daily_cap=1),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"rep-ada": 1, "rep-grace": 2, "rep-alan": 1},
            id="a daily cap stops a rep for the day",
        ),
        pytest.param(
            LIVE,
            NIGHT,
            {"rep-linus": 4},
            {"rep-linus": 4},
            id="replayed at its decision time: at night sdr-emea overflows to sdr-inbound",
        ),
        pytest.param(
            with_rep(LIVE, "rep-linus", active=False),
            NIGHT,
            {"rep-linus": 4},
            {"sdr-unassigned": 4},
            id="nobody at all: the fallback queue",
        ),
        pytest.param(
            routing_config(suppression={"blocked_domains": ["northwind-logistics.com"]}),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"not to sales": 4},
            id="a draft that suppresses the domain sends none to sales",
        ),
        pytest.param(
            routing_config(triggers={"sdr": ["sql"], "nurture": ["lead"]}),
            NOW,
            {"rep-ada": 2, "rep-grace": 1, "rep-alan": 1},
            {"not to sales": 4},
            id="a draft whose sdr trigger is not mql decides nothing",
        ),
    ],
)
def test_four_mqls_replayed_through_the_live_routing_and_a_draft(
    draft: RoutingConfig,
    at: datetime,
    live_counts: dict[str, int],
    draft_counts: dict[str, int],
) -> None:
    result = replay(draft, [emea_mql(n, at=at + timedelta(minutes=n)) for n in range(4)])

    assert counts(result, "live") == live_counts
    assert counts(result, "draft") == draft_counts


def test_a_daily_cap_counts_per_local_day_of_the_rep() -> None:
    """Ada capped at one a day: one on Monday, one again on Tuesday (Paris days)."""
    draft = with_rep(LIVE, "rep-ada", daily_cap=1)
    monday = [emea_mql(n, at=NOW + timedelta(minutes=n)) for n in range(3)]
    tuesday = [emea_mql(n, at=NOW + timedelta(days=1, minutes=n)) for n in range(3, 6)]

    result = replay(draft, [*monday, *tuesday])

    assert counts(result, "draft") == {"rep-ada": 2, "rep-grace": 2, "rep-alan": 2}


def test_each_routing_keeps_its_own_loads_from_empty() -> None:
    """The draft's turns follow the draft's own assignments, not the live routing's."""
    draft = with_rep(LIVE, "rep-ada", weight=3)
    result = replay(draft, [emea_mql(n, at=NOW + timedelta(minutes=n)) for n in range(5)])

    assert counts(result, "live") == {"rep-ada": 3, "rep-grace": 1, "rep-alan": 1}
    assert counts(result, "draft") == {"rep-ada": 3, "rep-grace": 1, "rep-alan": 1}
    changed = [(c["live"]["owner"], c["draft"]["owner"]) for c in result["changes"]]
    # live (2:1:1): Ada Grace Alan Ada Ada; draft (3:1:1): Ada Ada Grace Alan Ada
    assert changed == [
        ("rep-grace", "rep-ada"),
        ("rep-alan", "rep-grace"),
        ("rep-ada", "rep-alan"),
    ]


# ---- what a result holds -----------------------------------------------------------------------


def test_every_owner_change_is_counted_and_the_first_ones_listed_in_decision_order() -> None:
    draft = with_rep(LIVE, "rep-linus", active=False)
    night = [emea_mql(n, at=NIGHT + timedelta(seconds=n)) for n in range(EXAMPLES + 10)]

    result = replay(draft, night)

    assert result["owner_changes"] == EXAMPLES + 10
    assert len(result["changes"]) == EXAMPLES
    first = result["changes"][0]
    assert first == {
        "lead_id": "lead-0",
        "email": "lead-0@northwind-logistics.com",
        "decided_at": NIGHT.isoformat(),
        "live": {
            "owner": "rep-linus",
            "owner_name": "Linus Pauling",
            "team": "sdr-inbound",
            "queue": None,
            "not_to_sales": None,
        },
        "draft": {
            "owner": None,
            "owner_name": None,
            "team": None,
            "queue": "sdr-unassigned",
            "not_to_sales": None,
        },
    }
    assert [c["lead_id"] for c in result["changes"]] == [f"lead-{n}" for n in range(EXAMPLES)]


def test_a_replay_fed_in_chunks_finds_what_one_feed_finds() -> None:
    draft = with_rep(LIVE, "rep-ada", daily_cap=2)
    changes = [emea_mql(n, at=NOW + timedelta(hours=n)) for n in range(30)]
    whole = replay(draft, changes)
    chunked = Replay(live=LIVE, draft=draft)
    for start in range(0, len(changes), 7):
        chunked.feed(changes[start : start + 7])

    assert chunked.result() == whole


# ---- loads -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rep_id", "later", "counted"),
    [
        ("rep-ada", timedelta(hours=1), 2),  # same Paris day: counts on
        ("rep-ada", timedelta(hours=14), 1),  # Tuesday 00:15 in Paris: a new day
        ("rep-kat", timedelta(hours=14), 2),  # Monday 18:15 in New York: the same day
        ("rep-kat", timedelta(hours=20), 1),  # Tuesday 00:15 in New York
    ],
)
def test_simulated_loads_count_per_local_day_of_the_rep(
    rep_id: str, later: timedelta, counted: int
) -> None:
    loads = SimulatedLoads(LIVE)
    assignment = Assignment(strategy="round_robin", rep_id=rep_id)

    loads.count(assignment, NOW)
    loads.count(assignment, NOW + later)

    load = loads.at(NOW + later)[rep_id]
    assert load.assigned_today == counted
    assert load.last_assigned_at == NOW + later


def test_simulated_loads_start_empty_and_ignore_owners_outside_the_routing() -> None:
    loads = SimulatedLoads(LIVE)
    loads.count(Assignment(strategy="account_owner", rep_id=None), NOW)
    loads.count(Assignment(strategy="account_owner", rep_id="someone-else"), NOW)

    assert dict(loads.at(NOW)) == {}
    assert loads.at(NOW).get("rep-ada") is None


def test_an_account_owner_in_the_routing_is_counted_like_a_round_robin_pick() -> None:
    loads = SimulatedLoads(LIVE)
    owned = lifecycle_change(
        profile=profile(country="FR"),
        account={
            "account_id": "acc-1",
            "name": "Northwind Logistics",
            "type": "target",
            "owner_id": "rep-grace",
            "confidence": "strong",
            "method": "email_domain",
            "score": 100.0,
            "evidence": "email domain",
        },
    )

    outcome = outcome_of(owned, config=LIVE, loads=loads, at=NOW)

    assert outcome == Outcome(owner_id="rep-grace", owner_name="Grace Hopper", team="sdr-emea")
    assert loads.at(NOW)["rep-grace"].assigned_today == 1


# ---- the load preview --------------------------------------------------------------------------


def test_a_preview_routes_gained_leads_as_new_mqls_and_counts_lost_leads_where_they_are() -> None:
    was_a_lead = [
        lifecycle_change(
            lead_id=f"lead-{n}",
            from_stage=Stage.KNOWN,
            to_stage=Stage.LEAD,
            profile=profile(country="FR"),
        )
        for n in range(3)
    ]
    opted_out = lifecycle_change(
        to_stage=Stage.LEAD,
        profile=profile(country="FR"),
        consent={"email_opt_out": True},
    )
    lost = [
        CurrentOwner("lead-7", "rep-grace", "Grace Hopper", "sdr-emea", None),
        CurrentOwner("lead-8", "rep-kat", "Katherine Johnson", "sdr-amer", None),
        CurrentOwner("lead-9", None, None, None, "sdr-unassigned"),
    ]

    preview = preview_load(config=LIVE, gained=[*was_a_lead, opted_out], lost=lost, now=NOW)

    assert preview["teams"] == [
        {"team": "sdr-amer", "gained": 0, "lost": 1},
        {"team": "sdr-emea", "gained": 3, "lost": 1},
    ]
    assert {r["rep_id"]: (r["gained"], r["lost"]) for r in preview["reps"]} == {
        "rep-ada": (1, 0),  # from empty loads, all at `now`: Ada, Grace, Alan
        "rep-grace": (1, 1),
        "rep-alan": (1, 0),
        "rep-kat": (0, 1),
    }
    assert preview["queues"] == [{"queue": "sdr-unassigned", "gained": 0, "lost": 1}]
    assert preview["gained_not_to_sales"] == 1  # opted out: suppressed


def test_a_preview_at_night_sends_the_gained_leads_where_the_router_would_now() -> None:
    gained = [
        lifecycle_change(lead_id=f"lead-{n}", profile=profile(country="FR")) for n in range(2)
    ]

    preview = preview_load(config=LIVE, gained=gained, lost=[], now=NIGHT)

    assert {r["rep_id"]: r["gained"] for r in preview["reps"]} == {"rep-linus": 2}
