"""The routing file: the shipped default, and clear errors (file, line, field) for bad ones."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from services.router.routing_config import (
    DEFAULT_ROUTING_FILE,
    RoutingFileError,
    load_routing,
)

pytestmark = pytest.mark.unit

VALID = """\
version: v1
regions: {EMEA: [fr, de]}
teams:
  - name: sdr-emea
    timezone: Europe/Paris
    working_hours: {days: [mon, tue], start: "09:00", end: "24:00"}
    overflow: inbound
    reps:
      - {id: rep-ada, name: Ada Lovelace, email: ada@example.com, weight: 2}
      - {id: rep-alan, name: Alan Turing, email: alan@example.com, timezone: Europe/London}
  - name: inbound
    reps:
      - {id: rep-linus, name: Linus Pauling, email: lp@example.com}
territories:
  - {name: emea, team: sdr-emea, when: {regions: [EMEA]}}
default_team: inbound
fallback_queue: unassigned
nurture: {default: general-nurture}
sla: {by_priority: {A1: 5m}, by_grade: {A: 2h}, default: 1d}
"""


def routing_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_a_valid_routing_file_loads_with_team_defaults_and_durations(tmp_path: Path) -> None:
    config = load_routing(routing_file(tmp_path, VALID))

    ada, alan = config.team("sdr-emea").reps
    assert (ada.timezone, alan.timezone) == ("Europe/Paris", "Europe/London")
    assert ada.working_hours == alan.working_hours
    assert ada.working_hours is not None
    assert ada.working_hours.end == time.max
    assert config.team("inbound").reps[0].working_hours is None  # always on
    assert config.regions == {"EMEA": ["FR", "DE"]}
    assert config.sla.by_priority["A1"] == timedelta(minutes=5)
    assert config.sla.default == timedelta(days=1)
    assert [t.name for t in config.team_chain("sdr-emea")] == ["sdr-emea", "inbound"]


def test_the_default_routing_file_loads_and_knows_the_sample_account_owners() -> None:
    config = load_routing(DEFAULT_ROUTING_FILE)
    owners = {
        line.split(",")[-2]
        for line in (Path(__file__).parents[2] / "services" / "enrich" / "data" / "accounts.csv")
        .read_text()
        .splitlines()[1:]
    }

    assert owners <= {rep.id for team in config.teams for rep in team.reps}
    assert "NO" in config.regions["EMEA"]  # quoted: YAML 1.1 would read NO as false
    assert config.team(config.default_team).reps[0].working_hours is None  # routes any time


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        pytest.param(
            "default_team: inbound",
            "default_team: apac",
            "default_team: 'apac' is not one of the teams",
            id="unknown-default-team",
        ),
        pytest.param(
            "team: sdr-emea, when",
            "team: sdr-apac, when",
            "territory emea: 'sdr-apac' is not one of the teams",
            id="unknown-territory-team",
        ),
        pytest.param(
            "    reps:\n      - {id: rep-linus",
            "    overflow: sdr-emea\n    reps:\n      - {id: rep-linus",
            "overflow cycle: sdr-emea -> inbound -> sdr-emea",
            id="overflow-cycle",
        ),
        pytest.param(
            "id: rep-linus",
            "id: rep-ada",
            "rep ids must be unique across teams: ['rep-ada']",
            id="duplicate-rep",
        ),
        pytest.param(
            "regions: [EMEA]",
            "regions: [APAC]",
            "region 'APAC' is not defined under regions",
            id="undefined-region",
        ),
        pytest.param(
            "timezone: Europe/London",
            "timezone: Europe/Londn",
            "line 10: teams.0.reps.1.timezone: Value error, unknown time zone 'Europe/Londn'",
            id="bad-time-zone",
        ),
        pytest.param(
            'start: "09:00", end: "24:00"',
            'start: "18:00", end: "09:00"',
            "line 6: teams.0.working_hours: Value error, start must be before end",
            id="shift-backwards",
        ),
        pytest.param(
            "days: [mon, tue]",
            "days: [monday]",
            "line 6: teams.0.working_hours.days.0: Input should be 'mon'",
            id="bad-weekday",
        ),
        pytest.param(
            "weight: 2",
            "weight: 0",
            "line 9: teams.0.reps.0.weight: Input should be greater than or equal to 1",
            id="zero-weight",
        ),
        pytest.param(
            "default: 1d",
            "default: soon",
            "sla.default: Input should be a valid timedelta",
            id="bad-duration",
        ),
        pytest.param(
            "fallback_queue: unassigned\n",
            "",
            "fallback_queue: Field required",
            id="no-fallback-queue",
        ),
    ],
)
def test_a_bad_routing_file_is_refused_with_line_and_field(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    assert old in VALID
    path = routing_file(tmp_path, VALID.replace(old, new))

    with pytest.raises(RoutingFileError) as refused:
        load_routing(path)

    assert str(path) in str(refused.value)
    assert complaint in str(refused.value)
