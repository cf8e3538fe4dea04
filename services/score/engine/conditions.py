"""Rule conditions: a field of the event's facts, an operator, a value; combined with
`all` / `any` / `not`.

Facts are a flat dict built once per event (`facts_of`), keyed by dotted paths such as
`event`, `page.path`, `properties.plan`, `profile.seniority`, `firmographics.size_band`,
`account.type`. Text comparisons ignore case. A missing fact fails every operator except
`exists: false`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from shared.contracts import EnrichedEvent

Facts = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldTest(_Strict):
    """`field` plus exactly one operator."""

    field: str = Field(min_length=1)
    equals: str | int | float | bool | None = None
    in_: list[str | int | float] | None = Field(default=None, alias="in")
    contains: str | None = None
    regex: str | None = None
    at_least: float | None = None
    below: float | None = None
    exists: bool | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _one_operator(self) -> FieldTest:
        given = [name for name in _OPERATORS if getattr(self, name) is not None]
        ranged = {"at_least", "below"}
        if not given:
            raise ValueError(
                "needs an operator: equals, in, contains, regex, at_least/below, exists"
            )
        if len(given) > 1 and not set(given) <= ranged:
            raise ValueError(f"one operator per test, got {', '.join(given)}")
        return self

    def holds(self, facts: Facts) -> bool:
        value = facts.get(self.field)
        if self.exists is not None:
            return (value is not None and value != "") == self.exists
        if value is None:
            return False
        if self.equals is not None:
            return _same(value, self.equals)
        if self.in_ is not None:
            return any(_same(value, option) for option in self.in_)
        if self.contains is not None:
            return self.contains.casefold() in str(value).casefold()
        if self.regex is not None:
            return _compiled(self.regex).search(str(value)) is not None
        number = _number(value)
        if number is None:
            return False
        return (self.at_least is None or number >= self.at_least) and (
            self.below is None or number < self.below
        )


_OPERATORS = ("equals", "in_", "contains", "regex", "at_least", "below", "exists")


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)

    def holds(self, facts: Facts) -> bool:
        return all(part.holds(facts) for part in self.all)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)

    def holds(self, facts: Facts) -> bool:
        return any(part.holds(facts) for part in self.any)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def holds(self, facts: Facts) -> bool:
        return not self.not_.holds(facts)


def _shape(value: Any) -> str:
    """Which kind of condition a YAML mapping is, by its keys, so an error names one shape's
    fields instead of every shape's."""
    if isinstance(value, dict):
        return next((key for key in ("all", "any", "not") if key in value), "test")
    shapes: dict[type[BaseModel], str] = {AllOf: "all", AnyOf: "any", NotOf: "not"}
    return shapes.get(type(value), "test")


Condition = Annotated[
    Annotated[FieldTest, Tag("test")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_shape),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def fields_of(condition: FieldTest | AllOf | AnyOf | NotOf) -> set[str]:
    """Every fact a condition reads (to tell fit rules from behaviour rules)."""
    if isinstance(condition, FieldTest):
        return {condition.field}
    if isinstance(condition, NotOf):
        return fields_of(condition.not_)
    parts = condition.all if isinstance(condition, AllOf) else condition.any
    return set().union(*(fields_of(part) for part in parts))


PROFILE_PREFIXES = ("profile.", "firmographics.", "account.", "consent.")


def facts_of(event: EnrichedEvent) -> Facts:
    """The flat facts of one enriched event (see the module doc for the keys)."""
    facts: Facts = {
        "type": event.type,
        "event": event.event,
        "name": event.name,
        "source": event.source,
        "identified": event.identified,
    }
    _flatten("properties", event.properties, facts)
    _flatten("context", event.context, facts)
    page = event.context.get("page") if isinstance(event.context.get("page"), dict) else {}
    url = event.properties.get("url") or (page or {}).get("url")
    path = event.properties.get("path") or (page or {}).get("path")
    if not path and isinstance(url, str):
        path = _path_of(url)
    facts["page.url"] = url
    facts["page.path"] = path
    facts["page.title"] = event.properties.get("title") or (page or {}).get("title")
    _flatten("profile", event.profile.model_dump(), facts)
    if event.profile.email:
        facts["profile.email_domain"] = event.profile.email.rpartition("@")[2]
    if event.firmographics is not None:
        _flatten("firmographics", event.firmographics.model_dump(exclude={"sources"}), facts)
    if event.account is not None:
        _flatten("account", event.account.model_dump(), facts)
    _flatten("consent", event.consent.model_dump(exclude={"reasons"}), facts)
    return facts


def _flatten(prefix: str, value: Any, into: Facts, depth: int = 0) -> None:
    if isinstance(value, dict) and depth < 4:
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, into, depth + 1)
    else:
        into[prefix] = value


def _path_of(url: str) -> str | None:
    try:
        return urlsplit(url).path or None
    except ValueError:
        return None


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected or str(value).casefold() == str(expected).casefold()
    if isinstance(expected, int | float):
        number = _number(value)
        return number is not None and number == expected
    return str(value).casefold() == str(expected).casefold()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern, re.IGNORECASE)
    return compiled
