"""What the console knows of a lead: the read model's row, and how each message changes it.

Built only from the topics (`leads.lifecycle`, `leads.scored`): a lead enters the read model
with its first stage change (an anonymous visitor is not a lead the funnel counts yet). Pure:
the handler loads the records of a batch, applies the batch's messages in order, and stores
what they became; the funnel's aggregates follow from the difference between a record before
and after (`services.console.funnel`), so applying the same message twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.contracts import LeadScored, LifecycleChanged, Score, Stage


@dataclass(frozen=True)
class Move:
    """One stage change of the lead, as `leads.lifecycle` told it."""

    transition_id: str
    at: datetime
    from_stage: Stage
    to_stage: Stage
    skipped: tuple[Stage, ...] = ()


@dataclass(frozen=True)
class LeadRecord:
    """A lead as the console shows it. `moves` in the order score made them (one partition per
    lead keeps it); `created_at` is when the lead entered the funnel (its first move's time).
    `score_at`: the time of the score held, so an older score never replaces a newer one.
    Personal data (email, name, company, title) is shown to signed-in users only, never logged.
    """

    lead_id: str
    created_at: datetime
    stage: Stage
    stage_at: datetime
    moves: tuple[Move, ...]
    email: str | None = None
    name: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None
    source: str | None = None
    import_list: str | None = None
    campaign: str | None = None
    score: Score | None = None
    score_at: datetime | None = None
    likelihood: float | None = None

    @property
    def grade(self) -> str | None:
        return self.score.grade if self.score is not None else None

    def knows(self, transition_id: str) -> bool:
        return any(move.transition_id == transition_id for move in self.moves)


def on_lifecycle(record: LeadRecord | None, change: LifecycleChanged) -> LeadRecord:
    """The record after a stage change (unchanged when the change was applied before). The
    change's profile and first touch are the lead's newest picture; its score is kept unless a
    newer one is already held."""
    if record is not None and record.knows(change.transition_id):
        return record
    move = Move(
        transition_id=change.transition_id,
        at=change.at,
        from_stage=change.from_stage,
        to_stage=change.to_stage,
        skipped=tuple(change.skipped_stages),
    )
    profile = change.profile
    name = " ".join(part for part in (profile.first_name, profile.last_name) if part) or None
    company = profile.company or (
        change.firmographics.company_name if change.firmographics is not None else None
    )
    touch = change.first_touch
    base = record or LeadRecord(
        lead_id=change.lead_id,
        created_at=change.at,
        stage=change.to_stage,
        stage_at=change.at,
        moves=(),
    )
    updated = replace(
        base,
        created_at=min(base.created_at, change.at),
        stage=change.to_stage,
        stage_at=change.at,
        moves=(*base.moves, move),
        email=profile.email or base.email,
        name=name or base.name,
        company=company or base.company,
        title=profile.title or base.title,
        country=profile.country or base.country,
        source=(touch.source if touch else None) or base.source,
        import_list=(touch.import_list if touch else None) or base.import_list,
        campaign=(touch.campaign if touch else None) or base.campaign,
    )
    return _with_score(
        updated,
        score=change.score,
        at=change.at,
        likelihood=change.likelihood.probability if change.likelihood is not None else None,
    )


def on_scored(record: LeadRecord | None, scored: LeadScored) -> LeadRecord | None:
    """The record after a score change; None for a lead the funnel does not count yet (its
    first stage change carries its score then)."""
    if record is None:
        return None
    return _with_score(
        record,
        score=scored.score,
        at=scored.scored_at,
        likelihood=scored.likelihood.probability if scored.likelihood is not None else None,
    )


def _with_score(
    record: LeadRecord, *, score: Score, at: datetime, likelihood: float | None
) -> LeadRecord:
    if record.score_at is not None and at < record.score_at:
        return record
    return replace(
        record,
        score=score,
        score_at=at,
        likelihood=likelihood,
    )


def moves_to_json(moves: tuple[Move, ...]) -> list[list[Any]]:
    """The compact stored form of a record's moves (`console.leads.moves`)."""
    return [
        [
            move.transition_id,
            move.at.isoformat(),
            move.from_stage.value,
            move.to_stage.value,
            [stage.value for stage in move.skipped],
        ]
        for move in moves
    ]


def moves_from_json(value: list[list[Any]]) -> tuple[Move, ...]:
    return tuple(
        Move(
            transition_id=tid,
            at=datetime.fromisoformat(at),
            from_stage=Stage(from_stage),
            to_stage=Stage(to_stage),
            skipped=tuple(Stage(s) for s in skipped),
        )
        for tid, at, from_stage, to_stage, skipped in value
    )
