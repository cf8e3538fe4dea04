"""Scoring a lead's stored history again, under the live rule set or a candidate one.

A lead's history is every enriched message score received for it (its facts, time and id), in
order. Replaying it through `score_event` from an empty state gives the ledger and score that a
rule set would have produced, which is what both a simulation ("what would change?") and an
applied rule change need. Pure: the caller streams leads from the database in batches.

The stored facts are minimised (`stored_facts`): a message's IP address and user agent are
kept only when a rule live at its scoring read them, the address truncated to its /24 or /48.
Rules that start reading them later find none in the messages scored before, so a replay (a
rescore, a simulation) counts those rules only on messages scored since, and an address rule
holds on a replay only if it tests the network, not the whole address.

The history is kept for a time (`LEADFLOW_SCORE_HISTORY_RETENTION_DAYS`, `housekeeping`): a
replay replays only the messages that are left. A lead none of whose own messages is left is
replayed from its kept picture first (`with_kept_picture`), so that its fit survives a rescore.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from services.score.engine.conditions import Facts
from services.score.engine.lifecycle import ENGAGEMENT_TYPES, earned_move
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import Evaluation, ScoreCard, ScoreState, evaluate, score_event
from shared.contracts import Stage


@dataclass(frozen=True)
class HistoryItem:
    """One scored message. `behaviour`: its behaviour rules counted (a tracking call).
    `profile`: its picture is the lead's own, so fit rules read it; false for a message that
    came from a merged lead (redirected late, or folded in by a merge): only its behaviour
    counts for the survivor, as on the live path. `origin`: the lead the message was first
    counted under when that is another one (a merged lead, an anonymous visitor re-attributed);
    None: the lead's own."""

    message_id: str
    at: datetime
    facts: Facts
    behaviour: bool
    profile: bool = True
    origin: str | None = None


def with_kept_picture(
    items: Sequence[HistoryItem], picture: Facts | None, *, message_id: str, at: datetime
) -> Sequence[HistoryItem]:
    """What to replay of a lead: `items`, preceded by its kept picture (`picture`: the
    profile-side facts score keeps on the lead's row) as a message of its own, id `message_id`,
    when none of `items` carries the lead's own picture (`HistoryItem.profile`). That happens
    once every message of the lead's own is past the history's retention: its fit then comes
    from what score still knows of it instead of falling to nothing (fit rules read the
    picture alone). The added item is dated as the oldest of `items` (`at` when there are
    none), so it is replayed first; it counts no behaviour. `items` as given when one of them
    carries the picture, or no picture is kept."""
    if picture is None or any(item.profile for item in items):
        return items
    first = min((item.at for item in items), default=at)
    return [HistoryItem(message_id, first, picture, behaviour=False, profile=True), *items]


@dataclass(frozen=True)
class LeadHistory:
    lead_id: str
    stage: Stage
    identified: bool
    items: Sequence[HistoryItem]
    email: str | None = None  # how people know the lead, in what a simulation lists
    likelihood: float | None = None  # under the live model: what `mql.min_likelihood` reads
    # the lead's kept picture, where none of `items` carries it (`with_kept_picture`)
    picture: Facts | None = None

    def replayed_items(self, at: datetime) -> Sequence[HistoryItem]:
        """`items`, after the kept picture where none of them carries it."""
        return with_kept_picture(self.items, self.picture, message_id="picture", at=at)


T = TypeVar("T")

Check = Callable[[], None]
"""Called before each message is replayed; what it raises (e.g. the caller's time budget is
spent) stops the replay there. It is how a caller bounds a simulation, which may run a candidate
rule set posted by anyone allowed to simulate."""


def replay(
    rules: RuleSet, items: Sequence[HistoryItem], *, check: Check | None = None
) -> ScoreState:
    """The ledger state `rules` give this history (items in the order they were scored)."""
    state = ScoreState()
    for result in replayed(rules, items, check=check):
        state = result.state
    return state


def replayed(
    rules: RuleSet, items: Sequence[HistoryItem], *, check: Check | None = None
) -> Iterator[Evaluation]:
    """Each item's evaluation under `rules`, in order, each on the state the one before left:
    a lead's history scored again from nothing (its lines are what a rescore writes)."""
    state = ScoreState()
    for item in items:
        if check is not None:
            check()
        result = score_event(
            rules,
            state,
            item.facts,
            at=item.at,
            message_id=item.message_id,
            behaviour=item.behaviour,
            profile=item.profile,
        )
        state = result.state
        yield result


def earned_stage(rules: RuleSet, items: Sequence[HistoryItem]) -> Stage:
    """The stage a lead's own messages earn by marketing's path (anonymous, known, lead, mql),
    replayed in order as the live path moves a lead: what a pipeline fed only these messages
    would say. Sales stages and decay are not replayed (they come from the CRM and the clock),
    nor is a model's likelihood: `mql.min_likelihood` is left out here."""
    stage, identified, engaged = Stage.ANONYMOUS, False, False
    for item, result in zip(items, replayed(rules, items), strict=True):
        identified = identified or item.facts.get("identified") is True
        engaged = engaged or (item.behaviour and item.facts.get("type") in ENGAGEMENT_TYPES)
        qualifies = evaluate(rules, result.state, item.at).qualifies_as_mql
        move = earned_move(
            stage, identified=identified, engaged=engaged, qualifies=qualifies, why_qualified=""
        )
        if move is not None:
            stage = move.to_stage
    return stage


@dataclass(frozen=True)
class LeadDelta:
    lead_id: str
    email: str | None
    stage: Stage
    before: ScoreCard
    after: ScoreCard


LISTED = 50
"""Leads a simulation lists by name per kind of change (the rest are counted)."""
KEPT_IDS = 10_000
"""Lead ids a simulation keeps per kind of stage change, for the SDR load they would move
(the router's preview); past this many the load is that of the first ones (`ids_complete`)."""


@dataclass
class SimulationReport:
    """What a candidate rule set would change, as of one time. Memory is bounded however many
    leads are compared: every change is counted, the first `LISTED` of each kind are kept with
    their scores, and the first `KEPT_IDS` of each kind by id."""

    candidate_version: str
    leads: int = 0
    mqls: int = 0  # of the leads compared, those that are MQLs now (under the live rules)
    score_changed: int = 0
    becoming_mql: int = 0
    dropping_below_mql: int = 0
    would_become_mql: list[LeadDelta] = field(default_factory=list)  # the first LISTED
    would_drop_below_mql: list[LeadDelta] = field(default_factory=list)  # the first LISTED
    becoming_ids: list[str] = field(default_factory=list)  # the first KEPT_IDS
    dropping_ids: list[str] = field(default_factory=list)  # the first KEPT_IDS
    grade_changed: int = 0

    @property
    def stage_changes(self) -> int:
        return self.becoming_mql + self.dropping_below_mql

    def add_becoming(self, delta: LeadDelta) -> None:
        self.becoming_mql += 1
        _keep(self.would_become_mql, delta, LISTED)
        _keep(self.becoming_ids, delta.lead_id, KEPT_IDS)

    def add_dropping(self, delta: LeadDelta) -> None:
        self.dropping_below_mql += 1
        _keep(self.would_drop_below_mql, delta, LISTED)
        _keep(self.dropping_ids, delta.lead_id, KEPT_IDS)


def _keep(kept: list[T], item: T, most: int) -> None:
    if len(kept) < most:
        kept.append(item)


QUALIFIABLE = (Stage.KNOWN, Stage.LEAD, Stage.RECYCLED)


def simulate(
    live: RuleSet,
    candidate: RuleSet,
    leads: Iterable[LeadHistory],
    *,
    at: datetime,
    into: SimulationReport | None = None,
    check: Check | None = None,
) -> SimulationReport:
    """Compare the live rules' scores with the candidate's for every lead, as of `at`.

    "Would become MQL": an identified lead in known/lead/recycled that the candidate qualifies.
    "Would drop": an MQL that the candidate no longer qualifies (it would be recycled by the
    decay sweep's rule, not at once). A candidate's `mql.min_likelihood` reads each lead's
    likelihood under the live model as stored (none: the score thresholds alone). Stages past MQL belong to sales and are not simulated.
    Feed leads in chunks with `into=` to keep one chunk in memory. `check` is called before
    every message replayed (see `Check`); when it raises, `into` holds the leads compared in
    full (`leads` of them).
    """
    report = into or SimulationReport(candidate_version=candidate.version)
    for lead in leads:
        items = lead.replayed_items(at)
        before = evaluate(live, replay(live, items, check=check), at)
        after = evaluate(candidate, replay(candidate, items, check=check), at)
        report.leads += 1
        report.mqls += lead.stage == Stage.MQL
        delta = LeadDelta(lead.lead_id, lead.email, lead.stage, before, after)
        if (before.fit, before.behaviour) != (after.fit, after.behaviour):
            report.score_changed += 1
        if before.grade != after.grade:
            report.grade_changed += 1
        qualifies = candidate.mql.qualifies(after.qualifies_as_mql, lead.likelihood)
        if lead.identified and lead.stage in QUALIFIABLE and qualifies:
            report.add_becoming(delta)
        elif lead.stage == Stage.MQL and not qualifies:
            report.add_dropping(delta)
    return report


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScoreView(_Frozen):
    fit: int
    behaviour: int
    total: int
    priority: str
    qualifies_as_mql: bool


class LeadChange(_Frozen):
    lead_id: str
    email: str | None
    stage: str
    before: ScoreView
    after: ScoreView


class SimulationSummary(_Frozen):
    """The simulation's answer, the same for the CLI and `POST /v1/rules/simulate`: counts of
    every lead, and the first `listed` leads of each stage-changing kind."""

    live_version: str
    candidate_version: str
    as_of: datetime
    leads: int
    mqls_now: int = 0
    mqls_with_candidate: int = 0
    scores_changed: int
    grades_changed: int
    stage_changes: int
    would_become_mql: int
    would_drop_below_mql: int
    becoming_mql: list[LeadChange]
    dropping_below_mql: list[LeadChange]
    becoming_ids: list[str] = []
    dropping_ids: list[str] = []
    ids_complete: bool = True


def summarise(
    report: SimulationReport, *, live_version: str, at: datetime, listed: int = LISTED
) -> SimulationSummary:
    def change(delta: LeadDelta) -> LeadChange:
        return LeadChange(
            lead_id=delta.lead_id,
            email=delta.email,
            stage=delta.stage.value,
            before=_view(delta.before),
            after=_view(delta.after),
        )

    return SimulationSummary(
        live_version=live_version,
        candidate_version=report.candidate_version,
        as_of=at,
        leads=report.leads,
        mqls_now=report.mqls,
        mqls_with_candidate=report.mqls - report.dropping_below_mql + report.becoming_mql,
        scores_changed=report.score_changed,
        grades_changed=report.grade_changed,
        stage_changes=report.stage_changes,
        would_become_mql=report.becoming_mql,
        would_drop_below_mql=report.dropping_below_mql,
        becoming_mql=[change(d) for d in report.would_become_mql[:listed]],
        dropping_below_mql=[change(d) for d in report.would_drop_below_mql[:listed]],
        becoming_ids=report.becoming_ids,
        dropping_ids=report.dropping_ids,
        ids_complete=len(report.becoming_ids) == report.becoming_mql
        and len(report.dropping_ids) == report.dropping_below_mql,
    )


def render_summary(summary: SimulationSummary) -> str:
    """The CLI's view of a simulation."""
    s = summary
    out = [
        f"rules {s.live_version} -> {s.candidate_version}: {s.leads} lead{'' if s.leads == 1 else 's'}"
        f" (as of {s.as_of:%Y-%m-%d %H:%M} UTC)",
        f"  MQLs:                   {s.mqls_now} now, {s.mqls_with_candidate} with the candidate",
        f"  scores that change:     {s.scores_changed}",
        f"  grades that change:     {s.grades_changed}",
        f"  would become MQL:       {s.would_become_mql}",
    ]
    out += [
        f"    {_who(c)} ({c.stage}) {c.before.priority} {c.before.total}"
        f" -> {c.after.priority} {c.after.total}"
        for c in s.becoming_mql
    ]
    out.append(f"  would drop below MQL:   {s.would_drop_below_mql}")
    out += [
        f"    {_who(c)} {c.before.priority} {c.before.total} -> {c.after.priority} {c.after.total}"
        for c in s.dropping_below_mql
    ]
    return "\n".join(out)


def _who(change: LeadChange) -> str:
    """A lead as people know it: its email, with its id."""
    return f"{change.email} <{change.lead_id}>" if change.email else change.lead_id


def _view(card: ScoreCard) -> ScoreView:
    return ScoreView(
        fit=card.fit,
        behaviour=card.behaviour,
        total=card.total,
        priority=card.priority,
        qualifies_as_mql=card.qualifies_as_mql,
    )
