"""The routing configuration, changed by RevOps without code: teams and reps (weights, daily
caps, working hours, out of office), territories, account-owner routing, suppression, nurture
tracks and speed-to-lead SLAs.

`RoutingConfig` is the one validator of a routing document, wherever it comes from: the routing
file (YAML) the router adopts at start, a draft sent to the router's API, a stored version
(`routing_versions`). It is validated as a whole; a bad file stops the start with the file, line
and field at fault (`RoutingFileError`), never a half-working router. Times of day are local to
the rep's time zone (IANA names such as "Europe/Paris"); durations are written "90s", "5m", "2h"
or "1d".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from shared.config_files import ConfigFileError, load_yaml_model, parse_yaml_document
from shared.contracts import Stage

DEFAULT_ROUTING_FILE = Path(__file__).parent / "config" / "default.yaml"

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    """ "5m" -> 5 minutes. Anything else is left to pydantic's own timedelta parsing."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(lambda d: f"{int(d.total_seconds())}s", return_type=str),
]


def _time_of_day(value: Any) -> Any:
    # "24:00" closes a day that runs to midnight; time() has no 24:00, so it becomes time.max.
    if value == "24:00":
        return time.max
    return value


TimeOfDay = Annotated[time, BeforeValidator(_time_of_day)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkingHours(_Strict):
    """When a rep takes leads: these weekdays, from `start` to `end` local time."""

    days: list[Weekday] = Field(min_length=1)
    start: TimeOfDay
    end: TimeOfDay

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("start must be before end (shifts over midnight: use two teams)")
        return self


class OutOfOffice(_Strict):
    """Away from `from` to `until`, both days included (dates local to the rep)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    start: date = Field(alias="from")
    until: date

    @model_validator(mode="after")
    def _ordered(self) -> OutOfOffice:
        if self.until < self.start:
            raise ValueError("until must not be before from")
        return self


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name, e.g. Europe/Paris)"
        ) from None
    return name


class Rep(_Strict):
    """A person who takes leads. Missing `timezone` / `working_hours` come from the team; no
    working hours anywhere means always available (an inbound desk)."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    email: str = Field(min_length=3)
    weight: int = Field(default=1, ge=1, description="share of the team's leads, relative")
    daily_cap: int | None = Field(default=None, ge=0, description="leads per local day")
    timezone: str = "UTC"
    working_hours: WorkingHours | None = None
    out_of_office: list[OutOfOffice] = Field(default_factory=list)
    active: bool = True

    _check_zone = field_validator("timezone")(lambda cls, v: _zone(v))


class Manager(_Strict):
    """Who gets a lead whose SLA was breached too often (escalation)."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    email: str = Field(min_length=3)


class Team(_Strict):
    name: str = Field(min_length=1)
    timezone: str = "UTC"
    working_hours: WorkingHours | None = None
    reps: list[Rep] = Field(min_length=1)
    overflow: str | None = Field(
        default=None, description="the team to try when nobody here can take the lead"
    )
    manager: Manager | None = None

    _check_zone = field_validator("timezone")(lambda cls, v: _zone(v))

    @model_validator(mode="before")
    @classmethod
    def _reps_inherit_the_team_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("reps"), list):
            return data
        inherited = {k: data[k] for k in ("timezone", "working_hours") if k in data}
        reps = [{**inherited, **rep} if isinstance(rep, dict) else rep for rep in data["reps"]]
        return {**data, "reps": reps}


class Segment(_Strict):
    """Conditions on a lead; every condition given must hold (an empty segment matches all).

    Values are compared case-insensitively. `regions` are names from the file's `regions`.
    A lead without the fact (no industry known, say) does not match a condition on it.
    """

    regions: list[str] | None = None
    countries: list[str] | None = None
    industries: list[str] | None = None
    size_bands: list[str] | None = None
    seniorities: list[str] | None = None
    job_functions: list[str] | None = None
    stages: list[Stage] | None = None
    grades: list[str] | None = None
    bands: list[int] | None = None
    priorities: list[str] | None = None
    min_likelihood: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="the published model's likelihood to convert (docs/learning.md) is at "
        "least this; a lead without one (no model published) does not match",
    )


class Territory(_Strict):
    """First matching territory (in file order) picks the team."""

    name: str = Field(min_length=1)
    team: str
    when: Segment = Field(default_factory=Segment)


class AccountOwners(_Strict):
    """A lead matched to an owned account goes to the account's owner first."""

    enabled: bool = True
    min_confidence: Literal["strong", "weak"] = "strong"
    team_label: str = Field(
        default="account-owners", description="`owner.team` for an owner not in any team"
    )


class Expansion(_Strict):
    """Customers' leads are not routed, except those matching `when` (expansion business):
    those go to the account owner, else to `team`."""

    when: Segment
    team: str


class Suppression(_Strict):
    competitor_domains: list[str] = Field(default_factory=list)
    blocked_domains: list[str] = Field(default_factory=list)
    expansion: Expansion | None = None

    @field_validator("competitor_domains", "blocked_domains")
    @classmethod
    def _lower(cls, domains: list[str]) -> list[str]:
        return [d.strip().lower() for d in domains]


class Triggers(_Strict):
    """Which stage changes call for a decision."""

    sdr: list[Stage] = Field(default_factory=lambda: [Stage.MQL], min_length=1)
    nurture: list[Stage] = Field(default_factory=lambda: [Stage.KNOWN, Stage.LEAD, Stage.RECYCLED])

    @model_validator(mode="after")
    def _disjoint(self) -> Triggers:
        if both := set(self.sdr) & set(self.nurture):
            raise ValueError(f"stages both sdr and nurture triggers: {sorted(both)}")
        return self


class NurtureTrack(_Strict):
    track: str = Field(min_length=1)
    when: Segment


class Nurture(_Strict):
    """First matching track (in file order); `default` for the rest.

    `settle`: how long a nurture decision waits before it is sent. A lead that changes stage
    meanwhile (a new visitor who identifies and asks for a demo in one burst becomes an MQL
    milliseconds later) cancels it, so the CRM never enrols in nurture a lead that sales is
    about to call. Nurture is not urgent; an sdr decision never waits."""

    tracks: list[NurtureTrack] = Field(default_factory=list)
    default: str = Field(min_length=1)
    settle: Duration = Field(
        default=timedelta(seconds=30),
        description="how long a nurture decision waits for its lead to settle before it is sent",
    )

    @field_validator("settle")
    @classmethod
    def _settle_is_short(cls, value: timedelta) -> timedelta:
        # At least a second: a nurture decision always waits for the timer, never goes out in
        # the batch that made it (that batch cannot know its lead's sequence yet).
        if not timedelta(seconds=1) <= value <= timedelta(hours=1):
            raise ValueError("settle must be between 1s and 1h")
        return value


class Sla(_Strict):
    """How long an owner has to accept (crm.feedback) before the lead is reassigned. The most
    specific setting wins: priority (e.g. A1), then grade, then `default`."""

    by_priority: dict[str, Duration] = Field(default_factory=dict)
    by_grade: dict[str, Duration] = Field(default_factory=dict)
    default: Duration
    reassign_at_most: int = Field(
        default=2, ge=0, description="reassignments before escalating to the team's manager"
    )


class RoutingConfig(_Strict):
    version: str = Field(min_length=1)
    regions: dict[str, list[str]] = Field(default_factory=dict)
    triggers: Triggers = Field(default_factory=Triggers)
    account_owners: AccountOwners = Field(default_factory=AccountOwners)
    teams: list[Team] = Field(min_length=1)
    territories: list[Territory] = Field(default_factory=list)
    default_team: str
    fallback_queue: str = Field(min_length=1)
    suppression: Suppression = Field(default_factory=Suppression)
    nurture: Nurture
    sla: Sla

    @field_validator("regions")
    @classmethod
    def _upper_country_codes(cls, regions: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: [c.strip().upper() for c in codes] for name, codes in regions.items()}

    @model_validator(mode="after")
    def _references_resolve(self) -> RoutingConfig:
        names = [team.name for team in self.teams]
        if len(set(names)) != len(names):
            raise ValueError("team names must be unique")
        rep_ids = [rep.id for team in self.teams for rep in team.reps]
        if duplicated := sorted({i for i in rep_ids if rep_ids.count(i) > 1}):
            raise ValueError(f"rep ids must be unique across teams: {duplicated}")
        known = set(names)
        refs = [("default_team", self.default_team)]
        refs += [(f"territory {t.name}", t.team) for t in self.territories]
        refs += [(f"team {t.name} overflow", t.overflow) for t in self.teams if t.overflow]
        if self.suppression.expansion:
            refs.append(("suppression.expansion.team", self.suppression.expansion.team))
        for where, ref in refs:
            if ref not in known:
                raise ValueError(f"{where}: {ref!r} is not one of the teams {sorted(known)}")
        segments = [t.when for t in self.territories] + [t.when for t in self.nurture.tracks]
        if self.suppression.expansion:
            segments.append(self.suppression.expansion.when)
        for segment in segments:
            for region in segment.regions or ():
                if region not in self.regions:
                    raise ValueError(f"region {region!r} is not defined under regions")
        for name in names:
            list(self.team_chain(name))  # raises on an overflow cycle
        return self

    def team(self, name: str) -> Team:
        return next(team for team in self.teams if team.name == name)

    def team_chain(self, first: str) -> Iterator[Team]:
        """`first`, then its overflow team, then that one's, ...; a cycle is a config error."""
        seen: list[str] = []
        name: str | None = first
        while name is not None:
            if name in seen:
                raise ValueError(f"overflow cycle: {' -> '.join([*seen, name])}")
            seen.append(name)
            team = self.team(name)
            yield team
            name = team.overflow

    def rep(self, rep_id: str) -> tuple[Rep, Team] | None:
        for team in self.teams:
            for rep in team.reps:
                if rep.id == rep_id:
                    return rep, team
        return None


class RoutingFileError(ConfigFileError):
    """A routing file that cannot be used; the message names the file, line and field."""


def load_routing(path: Path) -> RoutingConfig:
    return load_yaml_model(path, RoutingConfig, error=RoutingFileError)


def read_routing_file(path: Path) -> dict[str, Any]:
    """The file's document as written (what a version stores), validated: a file that cannot be
    read or fails validation raises `RoutingFileError` naming the file, line and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RoutingFileError(f"{path}: {exc}") from None
    document, _ = parse_yaml_document(text, RoutingConfig, source=str(path), error=RoutingFileError)
    return document
