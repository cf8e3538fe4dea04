"""Who takes the lead: weighted round robin, caps, working hours, out of office, account owner,
overflow, fallback queue, and what happens after an SLA breach (services/router/assignment.py,
domain.assign_sdr, domain.after_breach)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.router.assignment import (
    Assignment,
    RepLoad,
    assign_in_teams,
    local_day,
    unavailable_reason,
    weighted_choice,
)
from services.router.domain import Breached, ToSdr, after_breach, assign_sdr, choose_route
from services.router.routing_config import Rep, RoutingConfig
from tests.unit.builders import NOW, account_match, lifecycle_change, routing_config

pytestmark = pytest.mark.unit

CONFIG = routing_config()
EMEA = CONFIG.team("sdr-emea")
CHAIN = [CONFIG.team("sdr-emea"), CONFIG.team("sdr-inbound")]


def rep(**fields: Any) -> Rep:
    defaults: dict[str, Any] = {"id": "rep-x", "name": "X", "email": "x@example.com"}
    return Rep.model_validate({**defaults, **fields})


def run_round_robin(
    reps: list[Rep], leads: int, *, loads: dict[str, RepLoad] | None = None
) -> list[str]:
    """Assign `leads` leads one by one, counting each like the handler does."""
    loads = dict(loads or {})
    owners = []
    for n in range(leads):
        chosen = weighted_choice(reps, loads)
        before = loads.get(chosen.id, RepLoad())
        loads[chosen.id] = RepLoad(before.assigned_today + 1, NOW + timedelta(seconds=n))
        owners.append(chosen.id)
    return owners


# ---- weighted round robin ---------------------------------------------------------------------


def test_equal_weights_take_turns_in_file_order() -> None:
    reps = [rep(id="a"), rep(id="b"), rep(id="c")]

    assert run_round_robin(reps, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_weights_share_the_leads_in_proportion_and_interleave() -> None:
    reps = [rep(id="a", weight=2), rep(id="b", weight=1)]

    owners = run_round_robin(reps, 9)

    assert owners == ["a", "b", "a", "a", "b", "a", "a", "b", "a"]
    assert Counter(run_round_robin(reps, 300)) == {"a": 200, "b": 100}


def test_weights_three_ways() -> None:
    reps = [rep(id="a", weight=3), rep(id="b", weight=2), rep(id="c", weight=1)]

    assert Counter(run_round_robin(reps, 600)) == {"a": 300, "b": 200, "c": 100}


def test_a_rep_behind_on_the_day_catches_up_first() -> None:
    reps = [rep(id="a"), rep(id="b")]
    loads = {"a": RepLoad(5, NOW), "b": RepLoad(2, NOW)}

    assert run_round_robin(reps, 4, loads=loads) == ["b", "b", "b", "a"]


def test_ties_go_to_whoever_waited_longest() -> None:
    reps = [rep(id="a"), rep(id="b")]
    loads = {"a": RepLoad(3, NOW), "b": RepLoad(3, NOW - timedelta(minutes=10))}

    assert weighted_choice(reps, loads).id == "b"


# ---- availability -----------------------------------------------------------------------------

OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}


@pytest.mark.parametrize(
    ("fields", "at", "reason"),
    [
        pytest.param({}, NOW, None, id="no-hours-always-on"),
        pytest.param({"active": False}, NOW, "rep-x inactive", id="inactive"),
        pytest.param(
            {"timezone": "Europe/Paris", "working_hours": OFFICE}, NOW, None, id="in-hours"
        ),
        pytest.param(
            {"timezone": "America/New_York", "working_hours": OFFICE},
            NOW,
            "rep-x outside working hours (America/New_York Mon 04:15)",
            id="before-hours-in-own-zone",
        ),
        pytest.param(
            {"timezone": "Europe/Paris", "working_hours": OFFICE},
            datetime.fromisoformat("2026-03-02T16:30:00+00:00"),
            "rep-x outside working hours (Europe/Paris Mon 17:30)",
            id="end-is-exclusive",
        ),
        pytest.param(
            {"timezone": "Europe/Paris", "working_hours": OFFICE},
            datetime.fromisoformat("2026-03-07T10:00:00+00:00"),
            "rep-x outside working hours (Europe/Paris Sat 11:00)",
            id="weekend",
        ),
        pytest.param(
            {
                "timezone": "Asia/Tokyo",
                "out_of_office": [{"from": "2026-03-02", "until": "2026-03-02"}],
            },
            NOW,
            "rep-x out of office until 2026-03-02",
            id="ooo-one-day-inclusive",
        ),
        pytest.param(
            {
                "timezone": "Asia/Tokyo",
                "out_of_office": [{"from": "2026-03-03", "until": "2026-03-09"}],
            },
            datetime.fromisoformat("2026-03-02T16:00:00+00:00"),  # already the 3rd in Tokyo
            "rep-x out of office until 2026-03-09",
            id="ooo-by-local-date",
        ),
        pytest.param(
            {"out_of_office": [{"from": "2026-02-01", "until": "2026-03-01"}]},
            NOW,
            None,
            id="back-from-ooo",
        ),
        pytest.param({"daily_cap": 3}, NOW, "rep-x at daily cap 3", id="at-cap"),
        pytest.param({"daily_cap": 4}, NOW, None, id="under-cap"),
    ],
)
def test_availability(fields: dict[str, Any], at: datetime, reason: str | None) -> None:
    assert unavailable_reason(rep(**fields), load=RepLoad(3, NOW), now=at) == reason


def test_the_cap_counts_per_local_day() -> None:
    tokyo = rep(timezone="Asia/Tokyo")

    # 23:30 UTC on Monday is already Tuesday in Tokyo: a new day, a fresh cap.
    assert local_day(tokyo, datetime.fromisoformat("2026-03-02T23:30:00+00:00")).isoformat() == (
        "2026-03-03"
    )
    assert local_day(rep(), datetime.fromisoformat("2026-03-02T23:30:00+00:00")).isoformat() == (
        "2026-03-02"
    )


def test_unavailable_reps_are_skipped_and_the_share_goes_to_the_others() -> None:
    team = routing_config().team("sdr-emea")
    loads = {"rep-ada": RepLoad(0, None)}
    away = team.model_copy(
        update={"reps": [team.reps[0].model_copy(update={"active": False}), *team.reps[1:]]}
    )

    owners = []
    for _ in range(4):
        chosen = assign_in_teams([away], loads=loads, now=NOW, queue="q")
        assert chosen.owner is not None
        owners.append(chosen.owner.id)
        loads[chosen.owner.id] = RepLoad(loads.get(chosen.owner.id, RepLoad()).assigned_today + 1)

    assert owners == ["rep-grace", "rep-alan", "rep-grace", "rep-alan"]


# ---- overflow and fallback --------------------------------------------------------------------


def test_in_office_hours_the_territory_team_takes_the_lead() -> None:
    chosen = assign_in_teams(CHAIN, loads={}, now=NOW, queue="sdr-unassigned")

    assert chosen.strategy == "round_robin"
    assert chosen.owner is not None
    assert (chosen.owner.id, chosen.owner.team, chosen.rep_id) == ("rep-ada", "sdr-emea", "rep-ada")


def test_out_of_hours_the_lead_overflows_and_the_reasons_name_each_skipped_rep() -> None:
    night = datetime.fromisoformat("2026-03-02T22:00:00+00:00")

    chosen = assign_in_teams(CHAIN, loads={}, now=night, queue="sdr-unassigned")

    assert chosen.strategy == "overflow"
    assert chosen.owner is not None
    assert chosen.owner.id == "rep-linus"
    assert chosen.reasons == (
        "nobody available in sdr-emea: rep-ada outside working hours (Europe/Paris Mon 23:00); "
        "rep-grace outside working hours (Europe/Paris Mon 23:00); "
        "rep-alan outside working hours (Europe/Paris Mon 23:00)",
        "sdr-inbound: round robin picked rep-linus",
    )


def test_nobody_available_anywhere_goes_to_the_fallback_queue_with_reasons() -> None:
    loads = {r: RepLoad(0) for r in ("rep-ada", "rep-grace", "rep-alan")}
    config = routing_config()
    inbound = config.team("sdr-inbound")
    capped = inbound.model_copy(
        update={"reps": [inbound.reps[0].model_copy(update={"daily_cap": 0})]}
    )
    night = datetime.fromisoformat("2026-03-02T22:00:00+00:00")

    chosen = assign_in_teams(
        [config.team("sdr-emea"), capped], loads=loads, now=night, queue="sdr-unassigned"
    )

    assert chosen == Assignment(
        strategy="fallback_queue",
        queue="sdr-unassigned",
        reasons=(
            "nobody available in sdr-emea: rep-ada outside working hours (Europe/Paris Mon 23:00);"
            " rep-grace outside working hours (Europe/Paris Mon 23:00);"
            " rep-alan outside working hours (Europe/Paris Mon 23:00)",
            "nobody available in sdr-inbound: rep-linus at daily cap 0",
        ),
    )


# ---- account owner first ----------------------------------------------------------------------


def owned(config: RoutingConfig = CONFIG, **account_fields: Any) -> ToSdr:
    route = choose_route(lifecycle_change(account=account_match(**account_fields)), config)
    assert isinstance(route, ToSdr)
    return route


def test_the_account_owner_gets_the_lead_even_out_of_hours_and_over_cap() -> None:
    night = datetime.fromisoformat("2026-03-02T22:00:00+00:00")
    config = routing_config()

    chosen = assign_sdr(owned(), config=config, loads={"rep-grace": RepLoad(999)}, now=night)

    assert chosen.strategy == "account_owner"
    assert chosen.owner is not None
    assert chosen.owner.id == "rep-grace"
    assert chosen.rep_id == "rep-grace"
    assert chosen.reasons == ("account owner of Northwind Logistics (acc-1)",)


def test_an_account_owner_out_of_office_falls_back_to_the_territory_round_robin() -> None:
    teams = routing_config().model_dump()["teams"]
    teams[0]["reps"][1]["out_of_office"] = [{"from": "2026-03-01", "until": "2026-03-06"}]
    config = routing_config(teams=teams)

    chosen = assign_sdr(owned(config), config=config, loads={}, now=NOW)

    assert chosen.strategy == "round_robin"
    assert chosen.owner is not None
    assert chosen.owner.id == "rep-linus"
    assert chosen.reasons[0] == (
        "account owner of Northwind Logistics (acc-1) skipped: "
        "rep-grace out of office until 2026-03-06"
    )


def test_an_owner_outside_the_teams_is_assigned_without_a_load() -> None:
    chosen = assign_sdr(
        owned(owner_id="ae-77", owner_email="ae77@example.com"), config=CONFIG, loads={}, now=NOW
    )

    assert chosen.strategy == "account_owner"
    assert chosen.owner is not None
    assert chosen.owner.email == "ae77@example.com"
    assert chosen.rep_id is None


# ---- after an SLA breach ----------------------------------------------------------------------


def breached(**fields: Any) -> Breached:
    defaults: dict[str, Any] = {
        "teams": ("sdr-emea", "sdr-inbound"),
        "tried": frozenset({"rep-ada"}),
        "reassignments": 0,
        "strategy": "round_robin",
    }
    return Breached(**{**defaults, **fields})


def test_a_breach_reassigns_to_a_rep_who_has_not_had_the_lead() -> None:
    chosen = after_breach(breached(), config=CONFIG, loads={}, now=NOW)

    assert chosen is not None
    assert chosen.strategy == "sla_reassigned"
    assert chosen.owner is not None
    assert chosen.owner.id == "rep-grace"
    assert chosen.reasons == ("sdr-emea: round robin picked rep-grace",)


def test_reassignment_overflows_when_everyone_in_the_team_had_the_lead() -> None:
    tried = frozenset({"rep-ada", "rep-grace", "rep-alan"})

    chosen = after_breach(breached(tried=tried), config=CONFIG, loads={}, now=NOW)

    assert chosen is not None
    assert chosen.strategy == "sla_reassigned"
    assert chosen.owner is not None
    assert chosen.owner.id == "rep-linus"
    assert chosen.reasons[0].startswith("nobody available in sdr-emea: rep-ada already had")


def test_after_the_allowed_reassignments_the_lead_is_escalated_to_a_manager() -> None:
    chosen = after_breach(breached(reassignments=2), config=CONFIG, loads={}, now=NOW)

    assert chosen is not None
    assert chosen.strategy == "sla_escalated"
    assert chosen.owner is not None
    assert (chosen.owner.id, chosen.owner.team) == ("mgr-emmy", "sdr-inbound")
    assert chosen.rep_id is None


def test_an_escalated_lead_stays_with_the_manager() -> None:
    assert (
        after_breach(breached(strategy="sla_escalated"), config=CONFIG, loads={}, now=NOW) is None
    )


def test_without_a_manager_the_lead_goes_to_the_queue_and_then_waits_there() -> None:
    config = routing_config(sla={"default": "1h", "reassign_at_most": 0})
    chain = ("sdr-emea",)

    first = after_breach(breached(teams=chain), config=config, loads={}, now=NOW)
    again = after_breach(
        breached(teams=chain, strategy="fallback_queue"), config=config, loads={}, now=NOW
    )

    assert first is not None
    assert first.strategy == "fallback_queue"
    assert first.queue == "sdr-unassigned"
    assert again is None


def test_a_queued_lead_goes_to_the_first_rep_available_after_its_sla() -> None:
    chosen = after_breach(
        breached(strategy="fallback_queue", tried=frozenset()), config=CONFIG, loads={}, now=NOW
    )

    assert chosen is not None
    assert chosen.owner is not None
    assert (chosen.strategy, chosen.owner.id) == ("sla_reassigned", "rep-ada")
