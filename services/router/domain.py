"""The routing choice: pure functions, no I/O, no clock (time is an argument)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.router.routing_config import Rep, RoutingConfig
from shared.contracts import LifecycleChanged, Stage

NURTURE_STAGES = frozenset({Stage.KNOWN, Stage.LEAD})


@dataclass(frozen=True)
class ToSdr:
    team: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ToNurture:
    track: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Suppressed:
    reason: str


Route = ToSdr | ToNurture | Suppressed


def choose_route(change: LifecycleChanged, config: RoutingConfig) -> Route | None:
    """Where a stage change sends the lead, or None if this change calls for no decision.

    Opted-out leads go nowhere (the suppression is recorded). MQLs go to the SDR team; known
    and engaged leads below MQL go to the nurture track for their fit grade.
    """
    if change.consent.email_opt_out:
        return Suppressed("opted out of email")
    reasons = tuple(c.reason for c in change.top_contributions)
    if change.to_stage == Stage.MQL:
        return ToSdr(team=config.sdr_team, reasons=(change.reason, *reasons))
    if change.to_stage in NURTURE_STAGES:
        track = config.nurture.by_grade.get(change.score.grade, config.nurture.default)
        return ToNurture(track=track, reasons=(change.reason, *reasons))
    return None


def choose_owner(reps: list[Rep], *, turn: int) -> Rep:
    """Round robin: the rep whose turn it is (`turn` counts assignments made in the team)."""
    return reps[turn % len(reps)]


def sla_due_at(decided_at: datetime, *, grade: str, config: RoutingConfig) -> datetime:
    minutes = config.sla.minutes_by_grade.get(grade, config.sla.default_minutes)
    return decided_at + timedelta(minutes=minutes)
