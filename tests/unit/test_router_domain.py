"""The routing choice: triggers, suppression, territories, account owners, nurture tracks and
SLA windows (services/router/domain.py, suppression.py, segments.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.router.domain import (
    AccountOwner,
    History,
    Suppressed,
    ToNurture,
    ToSdr,
    before_horizon,
    choose_route,
    route_now,
    sla_due_at,
)
from shared.contracts import AccountMatch, Consent, Contribution, Likelihood, Owner, Stage
from tests.unit.builders import (
    NOW,
    account_match,
    firmographics,
    lifecycle_change,
    profile,
    routing_config,
    score,
)

pytestmark = pytest.mark.unit

CONFIG = routing_config()


# ---- triggers and territories -----------------------------------------------------------------


def test_an_mql_goes_to_its_territory_team_and_overflows_along_the_chain() -> None:
    change = lifecycle_change(
        firmographics=firmographics(country="DE"),
        top_contributions=[
            Contribution(rule_id="demo-request", points=60, reason="asked for a demo"),
            Contribution(rule_id="senior-title", points=25, reason="senior decision maker"),
        ],
    )

    route = choose_route(change, CONFIG)

    assert route == ToSdr(
        teams=("sdr-emea", "sdr-inbound"),
        territory="emea",
        account_owner=None,
        reasons=(
            "total score 110 >= MQL threshold 60",
            "asked for a demo",
            "senior decision maker",
        ),
    )


@pytest.mark.parametrize(
    ("lead_country", "company_country", "teams"),
    [
        ("US", None, ("sdr-amer", "sdr-inbound")),
        ("us", "FR", ("sdr-amer", "sdr-inbound")),  # the lead's own country wins, any case
        (None, "GB", ("sdr-emea", "sdr-inbound")),  # else the company's
        ("JP", None, ("sdr-inbound",)),  # no territory: the default team
        (None, None, ("sdr-inbound",)),
    ],
)
def test_the_territory_comes_from_the_lead_country_else_the_company_country(
    lead_country: str | None, company_country: str | None, teams: tuple[str, ...]
) -> None:
    change = lifecycle_change(
        profile=profile(country=lead_country),
        firmographics=firmographics(country=company_country) if company_country else None,
    )

    route = choose_route(change, CONFIG)

    assert isinstance(route, ToSdr)
    assert route.teams == teams


def test_territories_match_on_industry_and_size_band_in_file_order() -> None:
    config = routing_config(
        territories=[
            {
                "name": "emea-enterprise-logistics",
                "team": "account-management",
                "when": {
                    "regions": ["EMEA"],
                    "industries": ["logistics"],
                    "size_bands": ["1001-5000", "5001-10000"],
                },
            },
            {"name": "emea", "team": "sdr-emea", "when": {"regions": ["EMEA"]}},
        ]
    )
    big = lifecycle_change(firmographics=firmographics(size_band="1001-5000"))
    mid = lifecycle_change(firmographics=firmographics(size_band="501-1000"))
    other_industry = lifecycle_change(
        firmographics=firmographics(size_band="1001-5000", industry="Retail")
    )

    assert [
        r.territory
        for r in map(lambda c: choose_route(c, config), [big, mid, other_industry])
        if isinstance(r, ToSdr)
    ] == ["emea-enterprise-logistics", "emea", "emea"]


@pytest.mark.parametrize(
    "to_stage", [Stage.SQL, Stage.SQO, Stage.MQL, Stage.ANONYMOUS, Stage.CUSTOMER]
)
def test_only_trigger_stages_are_routed(to_stage: Stage) -> None:
    config = routing_config(triggers={"sdr": ["sql"], "nurture": ["lead"]})

    route = choose_route(lifecycle_change(to_stage=to_stage), config)

    if to_stage == Stage.SQL:
        assert isinstance(route, ToSdr)
    else:
        assert route is None


# ---- account owners ---------------------------------------------------------------------------


def test_a_lead_of_an_owned_account_has_its_owner_as_candidate() -> None:
    route = choose_route(lifecycle_change(account=account_match(), account_id="acc-1"), CONFIG)

    assert isinstance(route, ToSdr)
    assert route.account_owner is not None
    assert route.account_owner.owner == Owner(
        id="rep-grace", name="Grace Hopper", email="grace@example.com", team="sdr-emea"
    )
    assert route.teams_to_lock == ("sdr-emea", "sdr-inbound")


def test_an_owner_known_only_by_email_is_found_in_the_teams() -> None:
    route = choose_route(
        lifecycle_change(account=account_match(owner_id="005xx0001", owner_email="LP@example.com")),
        CONFIG,
    )

    assert isinstance(route, ToSdr)
    assert route.account_owner is not None
    assert route.account_owner.owner.id == "rep-linus"


def test_an_owner_outside_the_routing_file_still_owns_the_lead() -> None:
    route = choose_route(
        lifecycle_change(account=account_match(owner_id="ae-77", owner_email="ae77@example.com")),
        CONFIG,
    )

    assert isinstance(route, ToSdr)
    assert route.account_owner == AccountOwner(
        owner=Owner(
            id="ae-77", name="ae77@example.com", email="ae77@example.com", team="account-owners"
        ),
        rep=None,
        account="Northwind Logistics (acc-1)",
    )
    assert "account-owners" not in route.teams_to_lock  # nobody's load to count


@pytest.mark.parametrize(
    ("match", "min_confidence", "has_owner"),
    [
        (account_match(confidence="weak", method="company_name"), "strong", False),
        (account_match(confidence="weak", method="company_name"), "weak", True),
        (account_match(owner_id=None, owner_email=None), "strong", False),
    ],
)
def test_owner_routing_needs_a_confident_match_and_a_known_owner(
    match: AccountMatch, min_confidence: str, has_owner: bool
) -> None:
    config = routing_config(account_owners={"min_confidence": min_confidence})

    route = choose_route(lifecycle_change(account=match), config)

    assert isinstance(route, ToSdr)
    assert (route.account_owner is not None) is has_owner


def test_owner_routing_can_be_switched_off() -> None:
    config = routing_config(account_owners={"enabled": False})

    route = choose_route(lifecycle_change(account=account_match()), config)

    assert isinstance(route, ToSdr)
    assert route.account_owner is None


# ---- suppression ------------------------------------------------------------------------------


@pytest.mark.parametrize("to_stage", [Stage.MQL, Stage.LEAD, Stage.KNOWN, Stage.RECYCLED])
def test_an_opted_out_lead_is_suppressed_whatever_its_stage(to_stage: Stage) -> None:
    change = lifecycle_change(
        to_stage=to_stage, consent=Consent(email_opt_out=True, reasons=["unsubscribed"])
    )

    assert choose_route(change, CONFIG) == Suppressed("opted out: unsubscribed")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            lifecycle_change(to_stage=Stage.DISQUALIFIED, reason="crm: disqualified (no budget)"),
            "disqualified: crm: disqualified (no budget)",
            id="disqualified",
        ),
        pytest.param(
            lifecycle_change(consent=Consent(suppressed=True, reasons=["GDPR erasure request"])),
            "on the suppression list: GDPR erasure request",
            id="suppression-list",
        ),
        pytest.param(
            lifecycle_change(profile=profile(email="spy@eu.rival.com", company_domain=None)),
            "competitor domain eu.rival.com",
            id="competitor-subdomain",
        ),
        pytest.param(
            lifecycle_change(profile=profile(email="x@gmail.com", company_domain="rival.com")),
            "competitor domain rival.com",
            id="competitor-company-domain",
        ),
        pytest.param(
            lifecycle_change(firmographics=firmographics(domain="blocked.example")),
            "blocked domain blocked.example",
            id="blocked-firmographics-domain",
        ),
        pytest.param(
            lifecycle_change(
                account=account_match(type="customer"), profile=profile(seniority="manager")
            ),
            "existing customer: account Northwind Logistics (acc-1)",
            id="customer",
        ),
        pytest.param(
            lifecycle_change(
                to_stage=Stage.LEAD, account=account_match(type="customer"), score=score(grade="A")
            ),
            "existing customer: account Northwind Logistics (acc-1)",
            id="customer-nurture-never-expansion",
        ),
    ],
)
def test_suppressed_leads_are_not_routed_and_the_reason_says_why(change: Any, reason: str) -> None:
    assert choose_route(change, CONFIG) == Suppressed(reason)


def test_not_a_competitor_because_the_domain_merely_ends_alike() -> None:
    change = lifecycle_change(profile=profile(email="a@notrival.com", company_domain=None))

    assert isinstance(choose_route(change, CONFIG), ToSdr)


def test_a_customer_matching_the_expansion_rule_goes_to_expansion() -> None:
    change = lifecycle_change(
        account=account_match(type="customer", owner_id=None, owner_email=None),
        profile=profile(seniority="vp"),
        score=score(grade="A"),
    )

    route = choose_route(change, CONFIG)

    assert isinstance(route, ToSdr)
    assert route.teams == ("account-management",)
    assert route.territory is None
    assert route.reasons[0] == "expansion: existing customer Northwind Logistics"


def test_without_an_expansion_rule_every_customer_is_suppressed() -> None:
    config = routing_config(suppression={})
    change = lifecycle_change(
        account=account_match(type="customer"),
        profile=profile(seniority="vp"),
        score=score(grade="A"),
    )

    assert choose_route(change, config) == Suppressed(
        "existing customer: account Northwind Logistics (acc-1)"
    )


# ---- nurture ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to_stage", "seniority", "grade", "track"),
    [
        (Stage.RECYCLED, "vp", "A", "recycled-reengagement"),  # first match in file order
        (Stage.LEAD, "vp", "C", "executive-briefings"),
        (Stage.KNOWN, "manager", "B", "high-fit-nurture"),
        (Stage.LEAD, "manager", "C", "general-nurture"),
        (Stage.KNOWN, None, "D", "general-nurture"),
    ],
)
def test_nurture_track_by_segment(
    to_stage: Stage, seniority: str | None, grade: str, track: str
) -> None:
    change = lifecycle_change(
        from_stage=Stage.ANONYMOUS,
        to_stage=to_stage,
        reason="identified",
        profile=profile(seniority=seniority),
        score=score(grade=grade),
        top_contributions=[],
    )

    assert choose_route(change, CONFIG) == ToNurture(track=track, reasons=("identified",))


def test_nurture_segments_on_band_and_priority() -> None:
    config = routing_config(
        nurture={
            "tracks": [
                {"track": "warm", "when": {"bands": [1, 2]}},
                {"track": "a3", "when": {"priorities": ["A3"]}},
            ],
            "default": "cold",
        }
    )

    def track_of(band: int | None, priority: str | None) -> str:
        change = lifecycle_change(to_stage=Stage.LEAD, score=score(band=band, priority=priority))
        route = choose_route(change, config)
        assert isinstance(route, ToNurture)
        return route.track

    assert [track_of(2, "A2"), track_of(3, "A3"), track_of(None, None)] == ["warm", "a3", "cold"]


@pytest.mark.parametrize(
    ("likelihood", "track"),
    [
        (0.42, "likely"),  # above the line
        (0.25, "likely"),  # exactly at it
        (0.24, "cold"),  # below it
        (None, "cold"),  # no model published: no likelihood, no match
    ],
)
def test_a_segment_can_ask_for_a_minimum_likelihood_to_convert(
    likelihood: float | None, track: str
) -> None:
    config = routing_config(
        nurture={
            "tracks": [{"track": "likely", "when": {"min_likelihood": 0.25}}],
            "default": "cold",
        }
    )
    change = lifecycle_change(
        to_stage=Stage.LEAD,
        likelihood=None
        if likelihood is None
        else Likelihood(probability=likelihood, model_version="3", horizon_days=90),
    )

    route = choose_route(change, config)

    assert isinstance(route, ToNurture)
    assert route.track == track


# ---- SLA --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "priority", "window"),
    [
        ("A", "A1", timedelta(minutes=5)),  # by priority first
        ("A", "A3", timedelta(hours=1)),  # then by grade
        ("B", "B1", timedelta(hours=4)),  # then the default
        ("D", None, timedelta(hours=4)),
    ],
)
def test_sla_due_at_by_priority_then_grade_then_default(
    grade: str, priority: str | None, window: timedelta
) -> None:
    due = sla_due_at(NOW, score=score(grade=grade, priority=priority), config=CONFIG)

    assert due == NOW + window


# ---- the backfill horizon: act now, or history only --------------------------------------------

HORIZON = timedelta(hours=72)
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("at", "history"),
    [
        (NOW, False),  # live
        (NOW - HORIZON + TICK, False),  # just inside the horizon
        (NOW - HORIZON, False),  # at the horizon exactly: still acted on
        (NOW - HORIZON - TICK, True),  # just outside
        (NOW - timedelta(days=120), True),  # a backfill of months
        (NOW + timedelta(hours=2), False),  # the future (a client clock ahead): acted on
        # the same instants in another time zone
        ((NOW - HORIZON).astimezone(timezone(timedelta(hours=-5))), False),
        ((NOW - HORIZON - TICK).astimezone(timezone(timedelta(hours=9))), True),
    ],
)
def test_a_change_is_history_only_when_it_happened_before_the_horizon(
    at: datetime, history: bool
) -> None:
    assert before_horizon(at, now=NOW, horizon=HORIZON) is history


@pytest.mark.parametrize("to_stage", [Stage.MQL, Stage.LEAD, Stage.RECYCLED])  # sdr, nurture
def test_an_old_change_that_would_be_routed_is_history_with_its_reason(to_stage: Stage) -> None:
    change = lifecycle_change(to_stage=to_stage, at=datetime(2025, 11, 2, 9, 30, tzinfo=UTC))
    route = choose_route(change, CONFIG)
    assert isinstance(route, ToSdr | ToNurture)

    assert route_now(route, change, now=NOW, horizon=HORIZON) == History(
        "history: the stage change happened at 2025-11-02T09:30:00+00:00,"
        " before the backfill horizon of 72 h"
    )


def test_a_change_inside_the_horizon_keeps_its_route() -> None:
    change = lifecycle_change(at=NOW - HORIZON)
    route = choose_route(change, CONFIG)
    assert isinstance(route, ToSdr)

    assert route_now(route, change, now=NOW, horizon=HORIZON) is route


@pytest.mark.parametrize(
    ("to_stage", "consent", "expected"),
    [
        # A suppression starts nothing: its own reason says more than "history".
        (Stage.MQL, Consent(email_opt_out=True), Suppressed("opted out")),
        (Stage.DISQUALIFIED, Consent(), Suppressed("disqualified: bad fit")),
        # A stage that is no trigger calls for no decision, old or not.
        (Stage.SQL, Consent(), None),
    ],
)
def test_an_old_change_that_starts_nothing_is_left_as_it_is(
    to_stage: Stage, consent: Consent, expected: Suppressed | None
) -> None:
    change = lifecycle_change(
        to_stage=to_stage, consent=consent, reason="bad fit", at=NOW - timedelta(days=120)
    )
    route = choose_route(change, CONFIG)

    assert route_now(route, change, now=NOW, horizon=HORIZON) == route == expected
