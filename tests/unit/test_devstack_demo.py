"""The demo's routing (devstack/demo.py, `demo_routing`): the default routing file with caps for
the demo's pace, so that the demo shows a real day instead of reps at their caps by minute 4."""

from __future__ import annotations

import math

import pytest

from devstack.demo import DEMO_JOURNEYS_PER_S, demo_routing, routing_yaml
from services.router.routing_config import (
    DEFAULT_ROUTING_FILE,
    RoutingConfig,
    RoutingFileError,
    load_routing,
)
from shared.config_files import parse_yaml_model

DEFAULT = load_routing(DEFAULT_ROUTING_FILE)
DEMO_LEADS_PER_HOUR = DEMO_JOURNEYS_PER_S * 3600  # at most one SDR lead per journey
DEMO = demo_routing(DEFAULT, leads_per_hour=DEMO_LEADS_PER_HOUR)


def team_cap(config: RoutingConfig, team: str) -> int:
    return sum(rep.daily_cap or 0 for rep in config.team(team).reps)


@pytest.mark.parametrize(
    ("team", "hours"),
    [
        ("sdr-emea", 10),  # 08:30-18:30 Paris
        ("sdr-amer", 10),  # 08:00-18:00 New York
        ("sdr-inbound", 24),  # the follow-the-sun desk: no working hours
    ],
)
def test_a_team_could_take_every_demo_lead_of_its_working_day_under_the_demo_caps(
    team: str, hours: int
) -> None:
    assert team_cap(DEMO, team) >= DEMO_LEADS_PER_HOUR * hours


def test_the_real_caps_were_spent_within_minutes_of_demo_traffic() -> None:
    # Why: a journey a second spends sdr-amer's real day within minutes of the demo.
    minutes = team_cap(DEFAULT, "sdr-amer") / DEMO_LEADS_PER_HOUR * 60
    assert minutes < 5


def test_every_cap_grows_by_the_same_whole_factor_and_nothing_else_changes() -> None:
    factors = {
        demo.daily_cap / real.daily_cap
        for real_team, demo_team in zip(DEFAULT.teams, DEMO.teams, strict=True)
        for real, demo in zip(real_team.reps, demo_team.reps, strict=True)
        if real.daily_cap is not None and demo.daily_cap is not None
    }
    assert len(factors) == 1
    factor = factors.pop()
    assert factor == int(factor) > 1
    assert DEMO.version == f"{DEFAULT.version}+demo-caps-x{int(factor)}"
    # The account-management rep has no cap, and keeps none.
    assert DEMO.team("account-management").reps[0].daily_cap is None
    uncapped = DEMO.model_copy(update={"version": DEFAULT.version, "teams": DEFAULT.teams})
    assert uncapped == DEFAULT


def test_the_factor_is_the_smallest_that_fits_the_busiest_day() -> None:
    # sdr-amer: 70 leads a day for 10 hours of demo at 3,600 leads an hour.
    assert DEMO.version.endswith(f"x{math.ceil(3600 * 10 / 70)}")
    # A slower demo needs no larger caps.
    assert demo_routing(DEFAULT, leads_per_hour=1) == DEFAULT.model_copy(
        update={"version": f"{DEFAULT.version}+demo-caps-x1"}
    )


def test_the_demo_routing_file_loads_as_the_demo_routing() -> None:
    text = routing_yaml(DEMO)
    loaded = parse_yaml_model(text, RoutingConfig, source="routing.yaml", error=RoutingFileError)
    assert loaded == DEMO
