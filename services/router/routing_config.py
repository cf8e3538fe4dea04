"""The routing configuration: teams, reps, nurture tracks and SLAs, in YAML (changed without code)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config_files import load_yaml_model

DEFAULT_ROUTING_FILE = Path(__file__).parent / "config" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rep(_Strict):
    id: str
    name: str
    email: str


class Team(_Strict):
    name: str
    reps: list[Rep] = Field(min_length=1)


class NurtureTracks(_Strict):
    """Track per fit grade; `default` for grades not listed."""

    by_grade: dict[str, str] = Field(default_factory=dict)
    default: str


class Sla(_Strict):
    """Minutes an SDR has to accept a lead, by fit grade; `default` for the others."""

    minutes_by_grade: dict[str, int] = Field(default_factory=dict)
    default_minutes: int = Field(gt=0)


class RoutingConfig(_Strict):
    sdr_team: str
    teams: list[Team] = Field(min_length=1)
    nurture: NurtureTracks
    sla: Sla

    @model_validator(mode="after")
    def _sdr_team_exists(self) -> RoutingConfig:
        if self.sdr_team not in {team.name for team in self.teams}:
            raise ValueError(f"sdr_team {self.sdr_team!r} is not one of the teams")
        return self

    def team(self, name: str) -> Team:
        return next(team for team in self.teams if team.name == name)


class RoutingFileError(ValueError):
    pass


def load_routing(path: Path) -> RoutingConfig:
    return load_yaml_model(path, RoutingConfig, error=RoutingFileError)
