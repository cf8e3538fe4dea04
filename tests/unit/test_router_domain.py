"""The routing choice, the owner's turn and the SLA (services/router)."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from pathlib import Path

import pytest

from services.router.domain import (
    Suppressed,
    ToNurture,
    ToSdr,
    choose_owner,
    choose_route,
    sla_due_at,
)
from services.router.routing_config import (
    DEFAULT_ROUTING_FILE,
    Rep,
    RoutingFileError,
    load_routing,
)
from shared.contracts import Consent, Contribution, Stage
from tests.unit.builders import NOW, lifecycle_change, routing_config, score

pytestmark = pytest.mark.unit

CONFIG = routing_config()


# ---- choose_route -----------------------------------------------------------------------------


def test_an_mql_goes_to_the_configured_sdr_team_with_its_reasons() -> None:
    change = lifecycle_change(
        to_stage=Stage.MQL,
        reason="total score 110 >= MQL threshold 60",
        top_contributions=[
            Contribution(rule_id="demo-request", points=60, reason="asked for a demo"),
            Contribution(rule_id="senior-title", points=25, reason="senior decision maker"),
        ],
    )

    route = choose_route(change, routing_config(sdr_team="sdr-amer"))

    assert route == ToSdr(
        team="sdr-amer",
        reasons=(
            "total score 110 >= MQL threshold 60",
            "asked for a demo",
            "senior decision maker",
        ),
    )


@pytest.mark.parametrize(
    ("to_stage", "grade", "track"),
    [
        (Stage.KNOWN, "A", "high-fit-nurture"),
        (Stage.LEAD, "A", "high-fit-nurture"),
        (Stage.LEAD, "B", "high-fit-nurture"),
        (Stage.LEAD, "C", "general-nurture"),
        (Stage.KNOWN, "D", "general-nurture"),
    ],
)
def test_known_and_engaged_leads_go_to_the_nurture_track_for_their_grade(
    to_stage: Stage, grade: str, track: str
) -> None:
    change = lifecycle_change(
        from_stage=Stage.ANONYMOUS,
        to_stage=to_stage,
        reason="identified",
        score=score(grade=grade),
        top_contributions=[],
    )

    assert choose_route(change, CONFIG) == ToNurture(track=track, reasons=("identified",))


@pytest.mark.parametrize(
    "to_stage",
    [Stage.SQL, Stage.SQO, Stage.CUSTOMER, Stage.RECYCLED, Stage.DISQUALIFIED, Stage.ANONYMOUS],
)
def test_other_stages_call_for_no_decision(to_stage: Stage) -> None:
    assert choose_route(lifecycle_change(to_stage=to_stage), CONFIG) is None


@pytest.mark.parametrize("to_stage", [Stage.MQL, Stage.LEAD, Stage.KNOWN])
def test_an_opted_out_lead_is_suppressed_whatever_its_stage(to_stage: Stage) -> None:
    change = lifecycle_change(to_stage=to_stage, consent=Consent(email_opt_out=True))

    assert choose_route(change, CONFIG) == Suppressed("opted out of email")


# ---- choose_owner -----------------------------------------------------------------------------

REPS = CONFIG.team("sdr-emea").reps


@pytest.mark.parametrize(
    ("turn", "rep_id"),
    [
        (0, "rep-ada"),
        (1, "rep-grace"),
        (2, "rep-alan"),
        (3, "rep-ada"),
        (7, "rep-grace"),
        (3002, "rep-alan"),
    ],
)
def test_choose_owner_takes_turns(turn: int, rep_id: str) -> None:
    assert choose_owner(REPS, turn=turn).id == rep_id


def test_round_robin_gives_every_rep_the_same_share() -> None:
    owners = [choose_owner(REPS, turn=turn).id for turn in range(30)]

    assert {rep: owners.count(rep) for rep in set(owners)} == {
        "rep-ada": 10,
        "rep-grace": 10,
        "rep-alan": 10,
    }
    assert all(a != b for a, b in itertools.pairwise(owners)), "never twice in a row"


def test_a_team_of_one_always_gets_the_lead() -> None:
    solo = [Rep(id="rep-kat", name="Katherine Johnson", email="kj@example.com")]

    assert {choose_owner(solo, turn=turn).id for turn in range(5)} == {"rep-kat"}


# ---- sla_due_at -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "minutes"),
    [("A", 5), ("B", 60), ("C", 60), ("D", 60), ("unknown", 60)],
)
def test_sla_due_at_by_grade(grade: str, minutes: int) -> None:
    assert sla_due_at(NOW, grade=grade, config=CONFIG) == NOW + timedelta(minutes=minutes)


def test_sla_minutes_come_from_the_config() -> None:
    config = routing_config(sla={"minutes_by_grade": {"A": 2, "B": 15}, "default_minutes": 240})

    assert sla_due_at(NOW, grade="B", config=config) == NOW + timedelta(minutes=15)
    assert sla_due_at(NOW, grade="D", config=config) == NOW + timedelta(hours=4)


# ---- load_routing -----------------------------------------------------------------------------


def test_the_default_routing_file_loads() -> None:
    config = load_routing(DEFAULT_ROUTING_FILE)

    assert config.team(config.sdr_team).reps
    assert config.nurture.default
    assert config.sla.default_minutes > 0


VALID = """\
sdr_team: sdr-emea
teams:
  - name: sdr-emea
    reps:
      - {id: rep-ada, name: Ada Lovelace, email: ada@example.com}
nurture: {by_grade: {A: high-fit-nurture}, default: general-nurture}
sla: {minutes_by_grade: {A: 5}, default_minutes: 60}
"""


def routing_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_a_valid_routing_file_loads(tmp_path: Path) -> None:
    config = load_routing(routing_file(tmp_path, VALID))

    assert [rep.id for rep in config.team("sdr-emea").reps] == ["rep-ada"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param(
            VALID.replace("sdr_team: sdr-emea\n", ""),
            "sdr_team: Field required",
            id="sdr-team-missing",
        ),
        pytest.param(
            VALID.replace("sdr_team: sdr-emea", "sdr_team: sdr-apac"),
            "sdr_team 'sdr-apac' is not one of the teams",
            id="sdr-team-unknown",
        ),
        pytest.param(
            VALID.replace(
                "    reps:\n      - {id: rep-ada, name: Ada Lovelace, email: ada@example.com}\n",
                "    reps: []\n",
            ),
            "teams.0.reps: List should have at least 1 item",
            id="team-without-reps",
        ),
        pytest.param(
            VALID.replace("default_minutes: 60", "default_minutes: 0"),
            "sla.default_minutes",
            id="zero-sla",
        ),
        pytest.param(
            VALID.replace("default: general-nurture", "fallback: general-nurture"),
            "nurture.fallback",
            id="unknown-field",
        ),
        pytest.param("sdr_team: [unclosed\n", "", id="not-yaml"),
        pytest.param("", "", id="empty"),
    ],
)
def test_a_bad_routing_file_is_refused_naming_the_file(
    tmp_path: Path, text: str, complaint: str
) -> None:
    path = routing_file(tmp_path, text)

    with pytest.raises(RoutingFileError) as refused:
        load_routing(path)

    assert str(refused.value).startswith(f"{path}: ")
    assert complaint in str(refused.value)


def test_a_missing_routing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RoutingFileError, match=re.escape(f"{tmp_path / 'nowhere.yaml'}: ")):
        load_routing(tmp_path / "nowhere.yaml")
