"""Score arithmetic: awards, caps, limits, decay, grade, band, priority and MQL.

The state of a lead is its ledger: the behaviour awards it earned (points after caps, at event
time) and the fit points it holds now (one line per fit rule that holds). Everything else is
derived from the ledger at a given time, so:

- the behaviour score at time T is the sum of every award's decayed value at T; the fit score is
  the sum of the fit points held; the total is their sum: the ledger sum, always;
- caps are applied when points are awarded (an award is clipped to the room left in its group
  and in the total, at that moment); decay only shrinks positive awards, so a capped score stays
  within its cap. (Negative awards in a decaying group can fade faster than positive ones; the
  read side clamps to the cap then, and `ScoreCard.clamped` says by how much.)
- evaluation takes the time as an argument (event time for events, the sweep time for the
  decay sweep): a replay of the same events in the same order gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from services.score.engine.conditions import Facts
from services.score.engine.ruleset import Rule, RuleSet

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Award:
    """A behaviour ledger line: `points` (after caps, signed) earned by `rule_id` at `at`."""

    rule_id: str
    group: str
    points: int
    at: datetime
    message_id: str


@dataclass(frozen=True)
class LedgerLine:
    """One line of a lead's points ledger, as an evaluation writes it and `score.ledger` keeps
    it (under the lead's id): `rule_id` gave `points` for message `message_id` at `event_time`,
    under rules `rule_version`. `points` is signed: a fit rule that stops holding gives back its
    points. `requested` is the rule's points before caps; `note` says why they differ."""

    message_id: str
    rule_id: str
    group: str
    kind: str
    points: int
    requested: int
    reason: str
    note: str
    rule_version: str
    event_time: datetime


@dataclass(frozen=True)
class ScoreState:
    awards: tuple[Award, ...] = ()
    fit: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreCard:
    fit: int
    behaviour: int
    total: int
    grade: str
    band: int
    priority: str
    qualifies_as_mql: bool
    by_group: Mapping[str, float]
    clamped: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """A message applied: the state after it, its ledger lines, and (`card`, computed when
    asked: the consumer values the lead at its own time, a replay needs only the state) the
    score at the message's time."""

    state: ScoreState
    lines: tuple[LedgerLine, ...]
    rules: RuleSet = field(repr=False, compare=False)
    at: datetime

    @cached_property
    def card(self) -> ScoreCard:
        return evaluate(self.rules, self.state, self.at)


def decayed_value(rules: RuleSet, award: Award, at: datetime) -> float:
    return decayed_values(rules, [award], at)[0]


def decayed_values(rules: RuleSet, awards: Sequence[Award], at: datetime) -> list[float]:
    """`decayed_value` of each award, in order (the same numbers: a lead's every award is
    valued on each event, so the loop is kept free of a call per award)."""
    decays = rules.decays
    values: list[float] = []
    for award in awards:
        decay = decays.get(award.group)
        if decay is None:
            values.append(float(award.points))
        else:
            age_days = (at - award.at).total_seconds() / SECONDS_PER_DAY
            values.append(award.points * decay.factor(age_days))
    return values


def evaluate(rules: RuleSet, state: ScoreState, at: datetime) -> ScoreCard:
    """The lead's score at time `at`, from its ledger alone.

    Ledger lines of rules or groups a newer rule version removed still count (the total stays
    the ledger sum) until a rescore under the new version gives them back.
    """
    by_group: dict[str, float] = {group.id: 0.0 for group in rules.groups}
    rule_groups = rules.rule_groups
    fit = 0.0
    for rule_id, points in state.fit.items():
        fit += points
        group_id = rule_groups.get(rule_id)
        if group_id is not None:
            by_group[group_id] += points
    raw_behaviour = 0.0
    for award, value in zip(state.awards, decayed_values(rules, state.awards, at), strict=True):
        raw_behaviour += value
        if award.group in by_group:
            by_group[award.group] += value
    behaviour = raw_behaviour
    if rules.caps.behaviour is not None:
        behaviour = min(behaviour, rules.caps.behaviour)
    fit_i, behaviour_i = round(fit), round(behaviour)
    grade, band = rules.grades.of(fit_i), rules.bands.of(behaviour_i)
    total = fit_i + behaviour_i
    mql = rules.mql
    qualifies = (
        (mql.min_fit is None or fit_i >= mql.min_fit)
        and (mql.min_behaviour is None or behaviour_i >= mql.min_behaviour)
        and (mql.min_total is None or total >= mql.min_total)
    )
    return ScoreCard(
        fit=fit_i,
        behaviour=behaviour_i,
        total=total,
        grade=grade,
        band=band,
        priority=f"{grade}{band}",
        qualifies_as_mql=qualifies,
        by_group=by_group,
        clamped=raw_behaviour - behaviour,
    )


def fell_below_line(
    rules: RuleSet, state: ScoreState, *, since: datetime, until: datetime
) -> datetime:
    """When, between `since` (qualifying) and `until` (not), the lead's score stopped
    qualifying as MQL by decay alone (its ledger as it is): the earliest such time to within a
    minute, found by bisection. A lead valued long after its last event (a history posted
    later, a sweep after an outage) so keeps the time it really crossed the line. Assumes the
    score falls with time, as positive points' decay makes it; where negative points' decay
    makes it rise again, one crossing in the interval is found."""
    low, high = since, until
    while (high - low).total_seconds() > 60:
        middle = low + (high - low) / 2
        if evaluate(rules, state, middle).qualifies_as_mql:
            low = middle
        else:
            high = middle
    return high


def apply_profile(
    rules: RuleSet, state: ScoreState, facts: Facts, *, at: datetime, message_id: str
) -> list[LedgerLine]:
    """Fit lines (for message `message_id` at `at`) that bring the held fit points in line with
    the profile in `facts`.

    Fit rules hold or not as a whole; caps (per group, then the fit total) are filled in rule
    order, so the file's order says which rule wins when a cap bites.
    """
    wanted: dict[str, tuple[Rule, int, str]] = {}
    room_by_group: dict[str, float] = {}
    room_total = float(rules.caps.fit) if rules.caps.fit is not None else float("inf")
    for rule in rules.rules_of("fit"):
        if not rule.when.holds(facts):
            continue
        group = rules.group(rule.group)
        room = room_by_group.setdefault(
            group.id, float(group.cap) if group.cap is not None else float("inf")
        )
        points, note = _clip(rule.points, min(room, room_total), group.id)
        room_by_group[group.id] = room - max(points, 0)
        room_total -= max(points, 0)
        wanted[rule.id] = (rule, points, note)
    lines: list[LedgerLine] = []
    for rule in rules.rules_of("fit"):
        held = state.fit.get(rule.id, 0)
        target_rule, target, note = wanted.get(rule.id, (rule, 0, ""))
        if target == held:
            continue
        reason = rule.reason if rule.id in wanted else f"no longer: {rule.reason}"
        lines.append(
            LedgerLine(
                message_id=message_id,
                rule_id=rule.id,
                group=rule.group,
                kind="fit",
                points=target - held,
                requested=target_rule.points,
                reason=reason,
                note=note,
                rule_version=rules.version,
                event_time=at,
            )
        )
    return lines


def apply_event(
    rules: RuleSet, state: ScoreState, facts: Facts, *, at: datetime, message_id: str
) -> list[LedgerLine]:
    """Behaviour lines an event (`message_id`) earns at event time `at` (limits, then caps)."""
    lines: list[LedgerLine] = []
    awards = list(state.awards)

    def counts(rule_ids: Sequence[str], within_days: float | None) -> int:
        return sum(
            1 for award in awards if award.rule_id in rule_ids and _within(award, at, within_days)
        )

    for rule in rules.behaviour_candidates(facts):
        if not rule.when.holds(facts, counts) or _limit_reached(rule, awards, at):
            continue
        group = rules.group(rule.group)
        values = decayed_values(rules, awards, at)  # once for both sums
        group_now = sum(v for a, v in zip(awards, values, strict=True) if a.group == group.id)
        behaviour_now = sum(values)
        room = min(
            (group.cap - group_now) if group.cap is not None else float("inf"),
            (rules.caps.behaviour - behaviour_now)
            if rules.caps.behaviour is not None
            else float("inf"),
        )
        points, note = _clip(rule.points, room, group.id)
        lines.append(
            LedgerLine(
                message_id=message_id,
                rule_id=rule.id,
                group=group.id,
                kind="behaviour",
                points=points,
                requested=rule.points,
                reason=rule.reason,
                note=note,
                rule_version=rules.version,
                event_time=at,
            )
        )
        # Later rules of the same event see this award (caps, limits).
        awards.append(Award(rule.id, group.id, points, at, message_id=""))
    return lines


def score_event(
    rules: RuleSet,
    state: ScoreState,
    facts: Facts,
    *,
    at: datetime,
    message_id: str,
    behaviour: bool,
    profile: bool = True,
) -> Evaluation:
    """Apply one enriched message: fit rules when `profile` (the message carries the lead's own
    picture), behaviour rules when `behaviour` (a tracking call, not a profile update).
    Evaluated at `at`."""
    lines = apply_profile(rules, state, facts, at=at, message_id=message_id) if profile else []
    if behaviour:
        lines += apply_event(rules, state, facts, at=at, message_id=message_id)
    return Evaluation(fold(state, lines), tuple(lines), rules, at)


def fold(state: ScoreState, lines: Sequence[LedgerLine]) -> ScoreState:
    """The state after `lines` were written to the ledger."""
    if not lines:
        return state  # most messages of a lead change nothing (states are immutable)
    fit = dict(state.fit)
    awards = list(state.awards)
    for line in lines:
        if line.kind == "fit":
            fit[line.rule_id] = fit.get(line.rule_id, 0) + line.points
            if fit[line.rule_id] == 0:
                del fit[line.rule_id]
        else:
            awards.append(
                Award(line.rule_id, line.group, line.points, line.event_time, line.message_id)
            )
    return ScoreState(awards=tuple(awards), fit=fit)


def award_order(award: Award) -> tuple[datetime, str, str]:
    """The order of a lead's awards in its state: the ledger's (event time, message, rule)."""
    return (award.at, award.message_id, award.rule_id)


def recorded(state: ScoreState, lines: Sequence[LedgerLine]) -> ScoreState:
    """The state of a ledger after `lines` were added to it, given the state of the ledger
    before (both in ledger order, as `explain.state_of` builds them): what `state_of` would
    read back from the stored rows, without reading them. Usually the new awards come last (the
    event is the lead's newest); an older event's awards are sorted into place."""
    folded = fold(state, lines)
    new = sorted(folded.awards[len(state.awards) :], key=award_order)
    if not new:
        return folded
    if state.awards and award_order(state.awards[-1]) > award_order(new[0]):
        return ScoreState(awards=tuple(sorted(folded.awards, key=award_order)), fit=folded.fit)
    return ScoreState(awards=state.awards + tuple(new), fit=folded.fit)


def _clip(points: int, room: float, group_id: str) -> tuple[int, str]:
    """Positive points fill at most the room left; negative points are never capped."""
    if points <= 0 or points <= room:
        return points, ""
    allowed = max(0, int(room))
    return allowed, f"capped: {points} asked, {allowed} left under the cap of {group_id}"


def _limit_reached(rule: Rule, awards: Sequence[Award], at: datetime) -> bool:
    if rule.limit is None:
        return False
    window = rule.limit.within_days
    earlier = sum(1 for award in awards if award.rule_id == rule.id and _within(award, at, window))
    return earlier >= rule.limit.times


def _within(award: Award, at: datetime, days: float | None) -> bool:
    """Whether the award was earned in the `days` before `at` (ever, when None)."""
    return days is None or 0 <= (at - award.at).total_seconds() < days * SECONDS_PER_DAY
