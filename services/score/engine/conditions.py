"""Rule conditions: a field of the event's facts, an operator, a value; combined with
`all` / `any` / `not`.

Facts are a flat dict built once per event (`facts_of`), keyed by dotted paths such as
`event`, `page.path`, `properties.plan`, `profile.seniority`, `firmographics.size_band`,
`account.type`. Text comparisons ignore case. A missing fact fails every operator except
`exists: false`.

A behaviour rule may also test the lead's past: `count` tests how many times earlier behaviour
rules counted for the lead within a window (e.g. emails delivered versus opened), through the
`Counts` the engine passes in. Pure: the counts come from the lead's ledger state.

`regex` is RE2's syntax (https://github.com/google/re2/wiki/Syntax), searched anywhere in the
text, ignoring case: RE2 matches in time linear in the text, so no pattern a rules file may hold
(a candidate posted to the simulate endpoint included) can stall scoring, as `(a+)+$` would with
Python's backtracking `re`. RE2 has no backreferences or lookaround: such a pattern is refused
when the file is validated. Each pattern is compiled once, when its rule is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

import re2
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from re2 import _re2

from shared.contracts import EnrichedEvent

Facts = dict[str, Any]


class Counts(Protocol):
    """How many awards of any of `rule_ids` the lead has within `within_days` before the
    event (ever, when None), this event's earlier awards included."""

    def __call__(self, rule_ids: Sequence[str], within_days: float | None) -> int: ...


@dataclasses.dataclass(frozen=True)
class _Regex:
    """A `regex` compiled by RE2. Equal to another of the same pattern, so conditions compare by
    what they say (pydantic compares private attributes too)."""

    pattern: str
    found_in: Callable[[str], bool] = dataclasses.field(compare=False, repr=False)


_REGEX_OPTIONS = re2.Options()
_REGEX_OPTIONS.case_sensitive = False
_REGEX_OPTIONS.never_capture = True  # a test asks only whether the text matches
_REGEX_OPTIONS.log_errors = False  # a refused pattern is reported, not written to stderr
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)


def _compile(pattern: str) -> _Regex:
    """`pattern` compiled by RE2; ValueError with RE2's reason when it cannot be.

    Through the binding's `RE2` object rather than `re2.compile`: the module's `search` builds a
    match object in Python, about 10 us a test against 1 us here (and `re`'s 0.7 us), and its
    `compile` keeps the last 128 patterns in a cache of its own."""
    compiled = _re2.RE2(pattern.encode(), _REGEX_OPTIONS)
    if not compiled.ok():
        reason = compiled.error()
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(
            f"not a regular expression RE2 can run ({reason}); RE2 has no backreferences or "
            "lookaround (see https://github.com/google/re2/wiki/Syntax)"
        )
    match = compiled.Match

    def found_in(text: str) -> bool:
        try:
            encoded = text.encode()
        except UnicodeEncodeError:  # a lone surrogate, as JSON may carry: matched as its bytes
            encoded = text.encode(errors="surrogatepass")
        return bool(match(_UNANCHORED, encoded, 0, len(encoded))[0] != _NO_MATCH)

    return _Regex(pattern, found_in)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldTest(_Strict):
    """`field` plus exactly one operator."""

    field: str = Field(min_length=1)
    # bool first: a union serialises by the first type that fits, and True is also an int
    equals: bool | str | int | float | None = None
    in_: list[str | int | float] | None = Field(default=None, alias="in")
    contains: str | None = None
    regex: str | None = None
    at_least: float | None = None
    below: float | None = None
    exists: bool | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("in_", mode="before")
    @classmethod
    def _no_booleans(cls, options: Any) -> Any:
        if isinstance(options, list) and any(isinstance(option, bool) for option in options):
            raise ValueError(
                "a true/false value in `in`: YAML reads unquoted yes, no, on, off, y, n (and so "
                "the country code NO) as booleans; quote them, e.g. 'NO'"
            )
        return options

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            _compile(pattern)  # refused here, where the error names the field
        return pattern

    def model_post_init(self, context: Any, /) -> None:
        _ = self._regex  # compiled now, with its rule, rather than on its first event

    @cached_property
    def _regex(self) -> _Regex | None:
        # Kept in the instance's __dict__: read for every test of every event, where a pydantic
        # private attribute costs 2 us a read.
        return None if self.regex is None else _compile(self.regex)

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

    def holds(self, facts: Facts, counts: Counts | None = None) -> bool:
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
        if self._regex is not None:
            return self._regex.found_in(str(value))
        number = _number(value)
        if number is None:
            return False
        return (self.at_least is None or number >= self.at_least) and (
            self.below is None or number < self.below
        )


_OPERATORS = ("equals", "in_", "contains", "regex", "at_least", "below", "exists")


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)

    def holds(self, facts: Facts, counts: Counts | None = None) -> bool:
        return all(part.holds(facts, counts) for part in self.all)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)

    def holds(self, facts: Facts, counts: Counts | None = None) -> bool:
        return any(part.holds(facts, counts) for part in self.any)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def holds(self, facts: Facts, counts: Counts | None = None) -> bool:
        return not self.not_.holds(facts, counts)


class CountTest(_Strict):
    """How often earlier behaviour rules counted for the lead: `count` (a rule id or a list,
    summed), optionally `within_days` of the event, and `at_least` and/or `below`.

    E.g. "received 10 emails in 60 days": `{count: email-delivered, within_days: 60,
    at_least: 10}`. A rule limited to N awards per window counts at most N there. Behaviour
    rules only (fit rules read the profile alone); without counts at hand it counts 0.
    """

    count: list[str] = Field(min_length=1)
    within_days: float | None = Field(default=None, gt=0)
    at_least: int | None = Field(default=None, ge=0)
    below: int | None = Field(default=None, ge=1)

    @field_validator("count", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _bounded(self) -> CountTest:
        if self.at_least is None and self.below is None:
            raise ValueError("a count needs at_least and/or below")
        return self

    def holds(self, facts: Facts, counts: Counts | None = None) -> bool:
        n = counts(self.count, self.within_days) if counts is not None else 0
        return (self.at_least is None or n >= self.at_least) and (
            self.below is None or n < self.below
        )


def _shape(value: Any) -> str:
    """Which kind of condition a YAML mapping is, by its keys, so an error names one shape's
    fields instead of every shape's."""
    if isinstance(value, dict):
        return next((key for key in ("all", "any", "not", "count") if key in value), "test")
    shapes: dict[type[BaseModel], str] = {
        AllOf: "all",
        AnyOf: "any",
        NotOf: "not",
        CountTest: "count",
    }
    return shapes.get(type(value), "test")


Condition = Annotated[
    Annotated[FieldTest, Tag("test")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[CountTest, Tag("count")],
    Discriminator(_shape),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


AnyCondition = FieldTest | AllOf | AnyOf | NotOf | CountTest


def fields_of(condition: AnyCondition) -> set[str]:
    """Every fact a condition reads (to tell fit rules from behaviour rules); a count reads
    `count:<rule id>`, which is no profile fact."""
    if isinstance(condition, FieldTest):
        return {condition.field}
    if isinstance(condition, CountTest):
        return {f"count:{rule_id}" for rule_id in condition.count}
    if isinstance(condition, NotOf):
        return fields_of(condition.not_)
    parts = condition.all if isinstance(condition, AllOf) else condition.any
    return set().union(*(fields_of(part) for part in parts))


def counted_rules(condition: AnyCondition) -> set[str]:
    """The rule ids a condition's `count` tests name."""
    return {f.removeprefix("count:") for f in fields_of(condition) if f.startswith("count:")}


def required_values(condition: AnyCondition, field: str) -> frozenset[str] | None:
    """The values (casefolded) `field` must have for the condition to hold, when it says so
    plainly: a text `equals` / `in` test on the field, alone or as a part of an `all`. None
    when the condition may hold whatever the field is (or compares numbers or booleans). A
    rule index uses it to skip rules that cannot hold for an event."""
    if isinstance(condition, FieldTest):
        if condition.field != field:
            return None
        options = [condition.equals] if condition.equals is not None else condition.in_
        if options is None or not all(isinstance(option, str) for option in options):
            return None
        return frozenset(str(option).casefold() for option in options)
    if isinstance(condition, AllOf):
        found = [required_values(part, field) for part in condition.all]
        narrowed = [values for values in found if values is not None]
        return frozenset.intersection(*narrowed) if narrowed else None
    return None


PROFILE_PREFIXES = ("profile.", "firmographics.", "account.", "consent.")


def facts_of(event: EnrichedEvent) -> Facts:
    """The flat facts of one enriched event (see the module doc for the keys): the call's
    own, then the lead's picture (`profile_facts_of`)."""
    facts = call_facts_of(event)
    facts.update(profile_facts_of(event))
    return facts


def call_facts_of(event: EnrichedEvent) -> Facts:
    """The facts of the call itself: type, event, name, source, identified, properties.*,
    context.*, page.*. All of them, for the rules to read on the live event; what the history
    keeps of them is less (`stored_facts`: the IP address and user agent only where a rule
    reads them, the address truncated)."""
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
    return facts


def profile_facts_of(event: EnrichedEvent) -> Facts:
    """The facts of the lead's picture, all keyed under `PROFILE_PREFIXES` (what fit rules
    may read): profile.*, firmographics.*, account.*, consent.*. Fields without a value are
    left out (a missing fact is a null one to every test), which is most of a new lead's
    picture: the picture is flattened for every event."""
    facts: Facts = {}
    _flatten("profile", event.profile.model_dump(exclude_none=True), facts)
    if event.profile.email:
        facts["profile.email_domain"] = event.profile.email.rpartition("@")[2]
    if event.firmographics is not None:
        firmographics = event.firmographics.model_dump(exclude={"sources"}, exclude_none=True)
        _flatten("firmographics", firmographics, facts)
    if event.account is not None:
        _flatten("account", event.account.model_dump(exclude_none=True), facts)
    _flatten("consent", event.consent.model_dump(exclude={"reasons"}, exclude_none=True), facts)
    return facts


def _flatten(prefix: str, value: Any, into: Facts, depth: int = 0) -> None:
    """`into[prefix.key...] = leaf` for every leaf of `value`, dicts nested up to 4 deep (a
    deeper dict is one fact). Leaves are written here rather than by a call of their own: facts
    are built for every event."""
    if not (isinstance(value, dict) and depth < 4):
        into[prefix] = value
        return
    for key, inner in value.items():
        if isinstance(inner, dict) and depth < 3:
            _flatten(f"{prefix}.{key}", inner, into, depth + 1)
        else:
            into[f"{prefix}.{key}"] = inner


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
