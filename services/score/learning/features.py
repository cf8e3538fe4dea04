"""A lead's features at a time: named numbers, the same for training and live scoring.

`features_of(activity, picture, scores, at=...)` gives a sparse dict, name -> value:

- **who the lead is** (its picture, `profile.*`, `firmographics.*`, `account.*`, `consent.*`):
  `<fact>=<value>` is 1 for a text value (casefolded) or a true flag; a number falls in a
  decade, `<fact>~100-999`; the job title gives one feature per word, `profile.title~student`.
  Facts that name a person or a company (email, names, phone, domains, ids) are never features:
  a model is a document people read and copy, and it must hold no personal data;
- **where it came from**: `origin.<fact>=<value>` for the first source and campaign (UTM) seen,
  `origin.import_list=<name>` for each import list;
- **what it did**: per behaviour kind (`activity.kind_of`), `<kind>@ever` and `<kind>@<N>d`
  for each window, valued log2(1 + count): the first few occurrences matter most;
- **what the rules say**: `rules.fit` and `rules.behaviour`, the running rules' scores / 100,
  and `rule:<id>` for each rule that counted (log2(1 + awards) for behaviour rules, 1 for a
  fit rule that holds). The likelihood model reads `rules.*`; the rules it proposes are fitted
  on `rule:*` and the facts no rule reads (`training`).

Pure. `describe` says each feature in the users' words, as a factor of a lead's likelihood.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping
from datetime import datetime
from typing import Any

from services.score.engine.conditions import PROFILE_PREFIXES, FieldTest, required_values
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import ScoreCard, ScoreState
from services.score.learning.activity import Activity

SECONDS_PER_DAY = 86_400.0
BEHAVIOUR_KINDS = ("event:", "page:", "screen:")
"""The prefixes of behaviour features (`activity.kind_of`)."""
IDENTIFYING = frozenset(
    {"email", "email_domain", "first_name", "last_name", "phone", "company", "company_domain",
     "domain", "company_name", "name", "account_id", "id", "user_id", "website",
     "owner_id", "owner_email", "evidence"}
)  # fmt: skip
"""Last parts of fact names whose values identify a person or a company: never features
(`account.owner_*` name the account's owner, `account.evidence` quotes a domain or name)."""
MAX_TITLE_WORDS = 8
TITLE_STOPWORDS = frozenset({"of", "the", "and", "for", "to", "in", "at", "on", "de", "la", "le",
                             "und", "der", "des", "du", "y", "et"})  # fmt: skip
MAX_VALUE = 60
_WORD = re.compile(r"[^\W\d_]{2,}")


def picture_features(picture: Mapping[str, Any]) -> dict[str, float]:
    """The features of a lead's picture (its profile-side facts, `PROFILE_PREFIXES`)."""
    features: dict[str, float] = {}
    for key, value in picture.items():
        if not key.startswith(PROFILE_PREFIXES) or value is None:
            continue
        if key.rpartition(".")[2] in IDENTIFYING:
            continue
        if key == "profile.title" and isinstance(value, str):
            words = dict.fromkeys(
                word for word in _WORD.findall(value.casefold()) if word not in TITLE_STOPWORDS
            )
            for word in list(words)[:MAX_TITLE_WORDS]:
                features[f"profile.title~{word}"] = 1.0
        elif isinstance(value, bool):
            if value:
                features[f"{key}=true"] = 1.0
        elif isinstance(value, int | float):
            features[f"{key}~{decade_of(float(value))}"] = 1.0
        elif isinstance(value, str) and value.strip():
            features[f"{key}={_value(value)}"] = 1.0
    return features


def decade_of(number: float) -> str:
    """The decade a number falls in: `0`, `1-9`, `10-99`, `100-999`... (negatives: `<0`)."""
    if number < 0:
        return "<0"
    if number < 1:
        return "0"
    low = 10 ** math.floor(math.log10(number))
    return f"{low}-{low * 10 - 1}"


def activity_features(
    activity: Activity,
    *,
    at: datetime,
    windows_days: tuple[float, ...],
    kinds: Container[str] | None = None,
) -> dict[str, float]:
    """Origin and behaviour features of `activity` as of `at` (see the module doc). `kinds`:
    only those behaviour kinds (a model's, when scoring live: the others weigh nothing)."""
    features: dict[str, float] = {}
    for key, value in activity.origin.items():
        features[f"origin.{key.removeprefix('context.')}={_value(value)}"] = 1.0
    for name in activity.lists:
        features[f"origin.import_list={_value(name)}"] = 1.0
    until = at.timestamp()
    for kind, total in activity.totals.items():
        if kinds is not None and kind not in kinds:
            continue
        features[f"{kind}@ever"] = math.log2(1 + total)
        for days in windows_days:
            count = activity.count(kind, since=until - days * SECONDS_PER_DAY, until=until)
            if count:
                features[f"{kind}@{days:g}d"] = math.log2(1 + count)
    return features


def rule_features(card: ScoreCard, state: ScoreState) -> dict[str, float]:
    """What the rules say: their scores and each rule that counted (see the module doc)."""
    features = {"rules.fit": card.fit / 100, "rules.behaviour": card.behaviour / 100}
    awards: dict[str, int] = {}
    for award in state.awards:
        awards[award.rule_id] = awards.get(award.rule_id, 0) + 1
    for rule_id, count in awards.items():
        features[f"rule:{rule_id}"] = math.log2(1 + count)
    for rule_id, points in state.fit.items():
        if points:
            features[f"rule:{rule_id}"] = 1.0
    return features


def features_of(
    activity: Activity,
    picture: Mapping[str, Any],
    *,
    card: ScoreCard,
    state: ScoreState,
    at: datetime,
    windows_days: tuple[float, ...],
    kinds: Container[str] | None = None,
) -> dict[str, float]:
    """Every feature of a lead as of `at` (its activity must hold only messages up to `at`);
    `kinds`: see `activity_features`."""
    features = picture_features(picture)
    features.update(activity_features(activity, at=at, windows_days=windows_days, kinds=kinds))
    features.update(rule_features(card, state))
    return features


def fact_of(feature: str) -> str:
    """The fact or family a feature is about (`profile.seniority=vp` -> `profile.seniority`,
    `event:demo requested@7d` -> `event:demo requested`, `rule:vp` -> `rule:vp`)."""
    for mark in ("=", "~"):
        if mark in feature and not feature.startswith(BEHAVIOUR_KINDS):
            return feature.split(mark, 1)[0]
    return feature.rsplit("@", 1)[0]


def factor_of(feature: str) -> str:
    """The factor a feature belongs to: a behaviour kind for its windows
    (`event:demo requested@7d` -> `event:demo requested`), else the feature itself."""
    if feature.startswith(BEHAVIOUR_KINDS):
        return feature.rpartition("@")[0] or feature
    return feature


def describe(feature: str, rules: RuleSet | None = None) -> str:
    """A feature in the users' words: a rule's own reason where a rule of `rules` says the same
    ("asked for a demo"), else what the lead did or is ("did 'Webinar Registered'", "title
    contains 'student'", "employee count 100-999"). A behaviour's windows share one description:
    they are one factor of a lead's likelihood (`model.Scorer`)."""
    if feature == "rules.fit":
        return "fit score under the current rules"
    if feature == "rules.behaviour":
        return "behaviour score under the current rules"
    if feature.startswith("rule:"):
        rule_id = feature.removeprefix("rule:")
        reason = _rule_reasons(rules).get(rule_id)
        return f"rule {rule_id}: {reason}" if reason else f"rule {rule_id}"
    if feature.startswith(BEHAVIOUR_KINDS):
        kind = feature.rpartition("@")[0] or feature
        what = _event_reasons(rules).get(kind) if kind.startswith("event:") else None
        if what is None:
            family, _, name = kind.partition(":")
            what = {"event": f"did '{name}'", "page": f"visited {name}"}.get(
                family, f"viewed screen '{name}'"
            )
        return what
    if feature.startswith("origin."):
        fact, _, value = feature.removeprefix("origin.").partition("=")
        label = {"import_list": "import list", "source": "source", "campaign.name": "campaign",
                 "campaign.source": "campaign source", "campaign.medium": "campaign medium"}  # fmt: skip
        return f"came from {label.get(fact, fact)} '{value}'"
    if feature.startswith("profile.title~"):
        return f"title contains '{feature.partition('~')[2]}'"
    fact, mark, value = feature.partition("=") if "=" in feature else feature.partition("~")
    words = fact.partition(".")[2].replace("_", " ").replace(".", " ")
    if mark == "~":
        return f"{words} {value}"
    return words if value == "true" else f"{words} is {value}"


def _rule_reasons(rules: RuleSet | None) -> dict[str, str]:
    return {} if rules is None else {rule.id: rule.reason for rule in rules.rules}


def _event_reasons(rules: RuleSet | None) -> dict[str, str]:
    """`event:<name>` -> the reason of the first behaviour rule that needs exactly that event."""
    reasons: dict[str, str] = {}
    for rule in [] if rules is None else rules.rules_of("behaviour"):
        if not isinstance(rule.when, FieldTest):  # a rule that also counts says more
            continue
        for name in sorted(required_values(rule.when, "event") or ()):
            reasons.setdefault(f"event:{name}", rule.reason)
    return reasons


def _value(value: str) -> str:
    return " ".join(value.split()).casefold()[:MAX_VALUE]
