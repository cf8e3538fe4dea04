"""The scoring rule set: a YAML file RevOps changes without code, validated at startup.

A rule gives signed points when its condition holds. `fit` rules look at the lead's profile and
count once per lead; `behaviour` rules look at an event and count every time it happens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.config_files import load_yaml_model
from shared.contracts import EnrichedEvent, LeadProfile

DEFAULT_RULES_FILE = Path(__file__).parent / "rules" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PropertyContains(_Strict):
    name: str
    contains: str


class Condition(_Strict):
    """Every field given must hold (AND). Text comparisons ignore case."""

    type: Literal["identify", "track", "page", "screen", "group", "alias"] | None = None
    event: str | None = None
    property: PropertyContains | None = None
    title_matches: str | None = Field(default=None, description="regular expression on job title")
    has: Literal["email", "company", "company_domain", "title"] | None = None

    @field_validator("title_matches")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                # pydantic reports ValueError with the field's location; re.error would escape.
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    def holds_for_event(self, event: EnrichedEvent) -> bool:
        if self.type is not None and event.type != self.type:
            return False
        if self.event is not None and (event.event or "").casefold() != self.event.casefold():
            return False
        if self.property is not None:
            value = event.properties.get(self.property.name)
            if (
                not isinstance(value, str)
                or self.property.contains.casefold() not in value.casefold()
            ):
                return False
        return self.holds_for_profile(event.profile)

    def holds_for_profile(self, profile: LeadProfile) -> bool:
        if self.title_matches is not None and not re.search(
            self.title_matches, profile.title or "", flags=re.IGNORECASE
        ):
            return False
        return self.has is None or bool(getattr(profile, self.has))


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: Literal["fit", "behaviour"]
    points: int = Field(ge=-1000, le=1000)
    reason: str
    when: Condition

    @model_validator(mode="after")
    def _fit_rules_look_at_the_profile(self) -> Rule:
        if self.kind == "fit" and (self.when.event or self.when.property or self.when.type):
            raise ValueError("a fit rule looks at the profile only (title_matches, has)")
        return self


class Thresholds(_Strict):
    mql_total: int = Field(description="total score at which a lead becomes an MQL")


class Grades(_Strict):
    """Minimum fit score per grade; below `C` is D."""

    A: int
    B: int
    C: int

    def grade(self, fit: int) -> str:
        if fit >= self.A:
            return "A"
        if fit >= self.B:
            return "B"
        return "C" if fit >= self.C else "D"


class RuleSet(_Strict):
    version: str = Field(min_length=1)
    thresholds: Thresholds
    grades: Grades
    rules: list[Rule]

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Rule]) -> list[Rule]:
        ids = [rule.id for rule in rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique: {', '.join(duplicates)}")
        return rules


class RulesFileError(ValueError):
    """A rules file that cannot be used; the message names the file and the field."""


def load_rules(path: Path) -> RuleSet:
    return load_yaml_model(path, RuleSet, error=RulesFileError)
