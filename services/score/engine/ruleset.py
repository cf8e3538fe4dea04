"""The scoring rule set (YAML, changed by RevOps without code), validated when loaded.

Structure (see rules/default.yaml for a commented example):
- `groups`: named buckets of rules, each `fit` (who the lead is) or `behaviour` (what the lead
  did), with an optional `cap` (the most the group can hold, positive side) and, for behaviour,
  a `decay` (half-life or linear, in days).
- `rules`: `id`, `group`, signed `points`, `reason`, `when` (a condition), and for behaviour
  an optional `limit` (`times`, optionally `within_days`: at most N awards per lead per window).
  A behaviour rule's condition may `count` earlier awards of behaviour rules (a 0-point rule
  can serve as a tally, e.g. of emails delivered).
- `caps`: the most fit and behaviour can each contribute to the total.
- `grades` (fit -> A-D), `bands` (behaviour -> 1-4), `mql` thresholds on fit, behaviour, total.
- `lifecycle`: how long an MQL may stay below the line before it is recycled.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.score.engine.conditions import (
    PROFILE_PREFIXES,
    Condition,
    Facts,
    counted_rules,
    fields_of,
    required_values,
)
from services.score.engine.stored_facts import personal_facts_read
from shared.config_files import ConfigFileError, load_yaml_model, parse_yaml_model

RuleKind = Literal["fit", "behaviour"]
DEFAULT_RULES_FILE = Path(__file__).resolve().parents[1] / "rules" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Decay(_Strict):
    """How behaviour points fade with the age of the event that earned them.

    `half_life_days`: value = points * 0.5 ** (age / half_life). `linear_days`: value falls in a
    straight line to 0 at that age. Neither: points keep their value (e.g. an unsubscribe).
    """

    half_life_days: float | None = Field(default=None, gt=0)
    linear_days: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_shape(self) -> Decay:
        if self.half_life_days is not None and self.linear_days is not None:
            raise ValueError("choose half_life_days or linear_days, not both")
        return self

    def factor(self, age_days: float) -> float:
        age = max(age_days, 0.0)
        if self.half_life_days is not None:
            return float(0.5 ** (age / self.half_life_days))
        if self.linear_days is not None:
            return max(0.0, 1.0 - age / self.linear_days)
        return 1.0


class Group(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: RuleKind
    cap: int | None = Field(default=None, gt=0)
    decay: Decay | None = None

    @model_validator(mode="after")
    def _fit_does_not_decay(self) -> Group:
        if self.kind == "fit" and self.decay is not None:
            raise ValueError("fit groups do not decay (the profile is re-evaluated instead)")
        return self


class Limit(_Strict):
    """At most `times` awards of a rule per lead, within `within_days` of event time if given."""

    times: int = Field(ge=1)
    within_days: float | None = Field(default=None, gt=0)


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    group: str
    points: int = Field(ge=-1000, le=1000)
    reason: str = Field(min_length=1)
    when: Condition
    limit: Limit | None = None


class Caps(_Strict):
    fit: int | None = Field(default=None, gt=0)
    behaviour: int | None = Field(default=None, gt=0)


class Grades(_Strict):
    """Minimum fit score per grade; below `C` is D."""

    A: int
    B: int
    C: int

    @model_validator(mode="after")
    def _descending(self) -> Grades:
        if not self.A > self.B > self.C:
            raise ValueError("grades must descend: A > B > C")
        return self

    def of(self, fit: float) -> str:
        if fit >= self.A:
            return "A"
        if fit >= self.B:
            return "B"
        return "C" if fit >= self.C else "D"


class Bands(_Strict):
    """Minimum behaviour score per band (1 hottest); below band 3 is 4."""

    band1: int = Field(alias="1")
    band2: int = Field(alias="2")
    band3: int = Field(alias="3")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _descending(self) -> Bands:
        if not self.band1 > self.band2 > self.band3:
            raise ValueError("bands must descend: 1 > 2 > 3")
        return self

    def of(self, behaviour: float) -> int:
        if behaviour >= self.band1:
            return 1
        if behaviour >= self.band2:
            return 2
        return 3 if behaviour >= self.band3 else 4


class MqlThresholds(_Strict):
    """A lead is marketing-qualified when every given threshold holds. `min_likelihood`: the
    published model's likelihood to convert (docs/learning.md) is at least this; it applies
    while a model is published and the lead has a likelihood, and is left out otherwise (then
    the score thresholds decide alone)."""

    min_fit: int | None = None
    min_behaviour: int | None = None
    min_total: int | None = None
    min_likelihood: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _at_least_one(self) -> MqlThresholds:
        if self.min_fit is None and self.min_behaviour is None and self.min_total is None:
            raise ValueError("give at least one of min_fit, min_behaviour, min_total")
        return self

    def qualifies(self, card_qualifies: bool, likelihood: float | None) -> bool:
        """Whether a lead whose score thresholds say `card_qualifies` is an MQL, with its
        likelihood (None: no model published, or none for the lead yet)."""
        if not card_qualifies or self.min_likelihood is None or likelihood is None:
            return card_qualifies
        return likelihood >= self.min_likelihood


class LifecyclePolicy(_Strict):
    """An MQL whose decayed score stays below the MQL line this long is recycled (to nurture)."""

    recycle_after_days_below: float = Field(default=14, gt=0)


class RuleSet(_Strict):
    """A validated rule set. Build variants with `model_validate` on a changed document, never
    `model_copy(update=...)`: that skips validation and keeps the cached lookups of the
    original."""

    version: str = Field(min_length=1)
    groups: list[Group] = Field(min_length=1)
    rules: list[Rule]
    caps: Caps = Caps()
    grades: Grades
    bands: Bands
    mql: MqlThresholds
    lifecycle: LifecyclePolicy = LifecyclePolicy()

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        problems: list[str] = []
        _unique("group", [group.id for group in self.groups], problems)
        _unique("rule", [rule.id for rule in self.rules], problems)
        groups = {group.id: group for group in self.groups}
        kinds = {r.id: groups[r.group].kind for r in self.rules if r.group in groups}
        for rule in self.rules:
            group = groups.get(rule.group)
            if group is None:
                problems.append(f"rule {rule.id}: unknown group {rule.group!r}")
                continue
            profile_only = all(f.startswith(PROFILE_PREFIXES) for f in fields_of(rule.when))
            if group.kind == "fit" and not profile_only:
                problems.append(
                    f"rule {rule.id}: a fit rule may only read "
                    f"{', '.join(p + '*' for p in PROFILE_PREFIXES)}"
                )
            if group.kind == "fit" and rule.limit is not None:
                problems.append(f"rule {rule.id}: fit rules count once per lead; no limit")
            for counted in sorted(counted_rules(rule.when)):
                if kinds.get(counted) != "behaviour":
                    problems.append(
                        f"rule {rule.id}: count names {counted!r}, which is no behaviour rule"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def groups_by_id(self) -> dict[str, Group]:
        return {group.id: group for group in self.groups}

    @cached_property
    def decays(self) -> dict[str, Decay]:
        """group id -> its decay, for the groups that decay (read for every award of a lead
        on every event)."""
        return {group.id: group.decay for group in self.groups if group.decay is not None}

    @cached_property
    def rule_groups(self) -> dict[str, str]:
        """rule id -> group id."""
        return {rule.id: rule.group for rule in self.rules}

    @cached_property
    def fields_read(self) -> frozenset[str]:
        """Every fact some rule's condition reads (a count reads `count:<rule id>`)."""
        return frozenset().union(*(fields_of(rule.when) for rule in self.rules))

    @cached_property
    def personal_facts_read(self) -> frozenset[str]:
        """The facts of a visitor's network identity (IP address, user agent) that some rule
        reads: the ones a scored message's stored history keeps (`stored_facts`). Worked out
        once per rule set: a batch reads it for every message it scores."""
        return personal_facts_read(self.fields_read)

    def group(self, group_id: str) -> Group:
        return self.groups_by_id[group_id]

    def rules_of(self, kind: RuleKind) -> list[Rule]:
        return self._rules_by_kind[kind]

    def behaviour_candidates(self, facts: Facts) -> list[Rule]:
        """The behaviour rules that may hold for an event with these facts, in file order:
        a rule whose condition names the `event` it needs (`equals` / `in`, alone or in an
        `all`) only for such an event, every other rule always (`holds` decides)."""
        event = facts.get("event")
        index, others = self._behaviour_by_event
        if event is None:
            return others
        return index.get(str(event).casefold(), others)

    @cached_property
    def _behaviour_by_event(self) -> tuple[dict[str, list[Rule]], list[Rule]]:
        """(candidates by casefolded event name, candidates of any other event). Built in one
        pass, in time proportional to what it holds (a rules file may be a posted candidate)."""
        index: dict[str, list[Rule]] = {}
        others: list[Rule] = []
        for rule in self.rules_of("behaviour"):
            needed = required_values(rule.when, "event")
            if needed is None:
                others.append(rule)
                for candidates in index.values():
                    candidates.append(rule)
                continue
            for name in needed:
                if name not in index:  # a new name: it has every earlier rule that names none
                    index[name] = list(others)
                index[name].append(rule)
        return index, others

    @cached_property
    def _rules_by_kind(self) -> dict[RuleKind, list[Rule]]:
        kinds = {group.id: group.kind for group in self.groups}
        return {
            kind: [rule for rule in self.rules if kinds[rule.group] == kind]
            for kind in ("fit", "behaviour")
        }


def _unique(what: str, ids: list[str], problems: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            problems.append(f"{what} id {item!r} is used twice")
        seen.add(item)


class RulesFileError(ConfigFileError):
    """A rules file that cannot be used; the message names the file, line and field."""


def load_rules(path: Path) -> RuleSet:
    return load_yaml_model(path, RuleSet, error=RulesFileError)


def parse_rules(text: str, *, source: str) -> RuleSet:
    """A rule set from YAML text (e.g. an HTTP request body); errors name `source`, the line and
    the field, as for a file."""
    return parse_yaml_model(text, RuleSet, source=source, error=RulesFileError)
