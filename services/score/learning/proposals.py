"""Rules a model proposes (`propose_rules`): the live rules file with points that follow what
was learned, and new rules for what no rule reads yet, as YAML a person reads, changes and
simulates before anything goes live.

From the model's proposal fit (`training`, weights on each rule's awards and on the facts no
rule reads):
- **scaled to the current range:** one factor turns weights into points, the one that gives
  the strongest learned rule the largest points of the live rules that counted;
- **signs kept:** a rule's proposed points have the sign of what was learned; a rule whose
  live points have the other sign is flagged as one that hurts (a comment says so);
- **rounded:** to whole points, to fives from 10 up; a 0-point tally rule stays 0 (other rules
  count it);
- **never fires:** a rule no training lead earned is kept as it is, flagged; so is one whose
  learned effect the older and newer training leads disagree on (an unstable weight);
- **new rules** for the strongest stable facts no rule reads (at least `MIN_NEW_POINTS`, at most
  `MAX_NEW_RULES`), in groups of their own (`learned-fit`, `learned-behaviour`,
  `learned-origin`), their reason the fact in the users' words.
The text is validated by the rules validator before it is returned. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from textwrap import indent
from typing import Any

import yaml

from services.score.engine.conditions import fields_of
from services.score.engine.first_touch import ORIGIN_FACTS
from services.score.engine.ruleset import RuleSet, parse_rules
from services.score.learning.features import BEHAVIOUR_KINDS
from services.score.learning.model import LikelihoodModel, ModelFeature

MIN_NEW_POINTS = 5
MAX_NEW_RULES = 15
NEW_GROUPS: dict[str, dict[str, Any]] = {
    "learned-fit": {"id": "learned-fit", "kind": "fit"},
    "learned-behaviour": {"id": "learned-behaviour", "kind": "behaviour",
                          "decay": {"half_life_days": 30}},
    "learned-origin": {"id": "learned-origin", "kind": "behaviour"},
}  # fmt: skip
_ORIGIN_FIELDS = {"source": "source", "import_list": "context.import.list",
                  **{key.removeprefix("context."): key for key in ORIGIN_FACTS}}  # fmt: skip


class NothingToPropose(Exception):
    """No rule counted for any training lead: there is no scale to propose points on."""


@dataclass(frozen=True)
class RuleChange:
    rule_id: str
    reason: str
    current: int | None  # None: a new rule
    proposed: int
    flags: tuple[str, ...] = ()
    support: int = 0  # training leads it was learned from


@dataclass
class Proposal:
    version: str
    text: str  # the rules file, YAML with comments
    changes: list[RuleChange] = field(default_factory=list)


def proposable(feature: str, rules: RuleSet, covered_kinds: set[str]) -> bool:
    """Whether a fact feature is one no live rule reads (so a new rule could): a behaviour
    kind no rule counted for, a picture fact no rule's condition reads, an origin no rule
    reads."""
    if feature.startswith(("rule:", "rules.")):
        return False
    read = {name for rule in rules.rules for name in fields_of(rule.when)}
    if feature.startswith(BEHAVIOUR_KINDS):
        return feature.rpartition("@")[0] not in covered_kinds
    if feature.startswith("origin."):
        fact = feature.removeprefix("origin.").partition("=")[0]
        return _ORIGIN_FIELDS.get(fact, fact) not in read
    fact = re.split(r"[=~]", feature, maxsplit=1)[0]
    return fact not in read


def propose_rules(model: LikelihoodModel, rules: RuleSet, *, model_version: str) -> Proposal:
    """The candidate rules file (see the module doc), validated."""
    weights = {f.name: f for f in model.proposal}
    fired = {
        rule.id: weights[f"rule:{rule.id}"]
        for rule in rules.rules
        if f"rule:{rule.id}" in weights and rule.points
    }
    if not fired:
        raise NothingToPropose(
            "no rule with points counted for a training lead: nothing to scale proposals by"
        )
    scale = max(abs(rule.points) for rule in rules.rules if rule.id in fired) / max(
        abs(f.weight) for f in fired.values()
    ) if any(f.weight for f in fired.values()) else 0.0  # fmt: skip
    documents: list[tuple[dict[str, Any], str]] = []
    changes: list[RuleChange] = []
    for rule in rules.rules:
        document = rule.model_dump(by_alias=True, exclude_none=True, mode="json")
        learned = weights.get(f"rule:{rule.id}")
        if not rule.points:
            documents.append((document, "a tally other rules count: kept at 0"))
            continue
        if learned is None:
            flag = (
                "counted alike for every training lead, so nothing was learned of it: kept"
                if f"rule:{rule.id}" in model.uninformative
                else "never fired for a training lead, or too rarely to learn from: kept as it is"
            )
            changes.append(RuleChange(rule.id, rule.reason, rule.points, rule.points, (flag,)))
            documents.append((document, flag))
            continue
        if not learned.stable:
            flag = (
                "uncertain: the older and the newer training leads disagree on its effect: "
                "kept as it is"
            )
            changes.append(
                RuleChange(rule.id, rule.reason, rule.points, rule.points, (flag,), learned.support)
            )
            documents.append((document, flag))
            continue
        proposed = _rounded(learned.weight * scale)
        flags = []
        if proposed and (proposed > 0) != (rule.points > 0):
            flags.append(
                f"hurts: gives {rule.points:+d}, but leads it counted for converted "
                f"{'more' if proposed > 0 else 'less'} than others"
            )
        comment = f"{rule.points:+d} -> {proposed:+d} (learned from {learned.support} leads)"
        document["points"] = proposed
        changes.append(
            RuleChange(rule.id, rule.reason, rule.points, proposed, tuple(flags), learned.support)
        )
        documents.append((document, "; ".join([comment, *flags])))
    new_rules = _new_rules(model.proposal, rules, scale)
    for document, change in new_rules:
        changes.append(change)
        documents.append((document, f"new: learned from {change.support} leads"))
    groups = [g.model_dump(by_alias=True, exclude_none=True, mode="json") for g in rules.groups]
    used = {document["group"] for document, _ in new_rules}
    groups += [NEW_GROUPS[group] for group in NEW_GROUPS if group in used]
    version = f"{rules.version}+model-{model_version}"
    text = _render(rules, version=version, groups=groups, rules_documents=documents, model=model)
    parse_rules(text, source="proposed rules")  # what a person gets must load as it is
    return Proposal(version=version, text=text, changes=changes)


def _new_rules(
    proposal: list[ModelFeature], rules: RuleSet, scale: float
) -> list[tuple[dict[str, Any], RuleChange]]:
    """The strongest facts no rule reads, as rules (a behaviour kind's windows added up)."""
    kinds: dict[str, float] = {}
    stable: dict[str, bool] = {}  # a kind is stable when each of its windows is
    facts: dict[str, ModelFeature] = {}
    for feature in proposal:
        if feature.name.startswith(("rule:", "rules.")):
            continue
        if feature.name.startswith(BEHAVIOUR_KINDS):
            kind = feature.name.rpartition("@")[0]
            kinds[kind] = kinds.get(kind, 0.0) + feature.weight
            stable[kind] = stable.get(kind, True) and feature.stable
            facts.setdefault(kind, feature)
        else:
            facts[feature.name] = feature
    candidates = []
    for name, feature in facts.items():
        weight = kinds.get(name, feature.weight)
        points = _rounded(weight * scale)
        if abs(points) >= MIN_NEW_POINTS and stable.get(name, feature.stable):
            candidates.append((abs(points), name, points, feature))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    taken: list[tuple[dict[str, Any], RuleChange]] = []
    ids = {rule.id for rule in rules.rules}
    for _, name, points, feature in candidates[:MAX_NEW_RULES]:
        shaped = _rule_shape(name)
        if shaped is None:
            continue
        group, when, limit = shaped
        rule_id = _unique_id(name, ids)
        reason = (
            feature.description.split(" (")[0]
            if group == "learned-behaviour"
            else feature.description
        )
        document: dict[str, Any] = {"id": rule_id, "group": group, "points": points,
                                    "reason": reason, "when": when}  # fmt: skip
        if limit is not None:
            document["limit"] = limit
        taken.append((document, RuleChange(rule_id, reason, None, points, (), feature.support)))
    return taken


def _rule_shape(name: str) -> tuple[str, dict[str, Any], dict[str, Any] | None] | None:
    """(group, condition, limit) of a rule that holds when the feature's fact does."""
    family, _, rest = name.partition(":")
    if family == "event":
        return (
            "learned-behaviour",
            {"field": "event", "equals": rest},
            {"times": 3, "within_days": 30},
        )
    if family == "page":
        if not rest.startswith("/"):  # a page call without a path: its kind is its name
            when = {"all": [{"field": "type", "equals": "page"},
                            {"field": "page.path", "exists": False},
                            {"field": "name", "equals": rest}]}  # fmt: skip
            return "learned-behaviour", when, {"times": 3, "within_days": 30}
        # the section and anything under it (a path that kept its query string too)
        pattern = "^/([?#]|$)" if rest == "/" else f"^{re.escape(rest)}([/?#]|$)"
        return (
            "learned-behaviour",
            {"field": "page.path", "regex": pattern},
            {"times": 3, "within_days": 30},
        )
    if family == "screen":
        when = {"all": [{"field": "type", "equals": "screen"}, {"field": "name", "equals": rest}]}
        return "learned-behaviour", when, {"times": 3, "within_days": 30}
    if name.startswith("origin."):
        fact, _, value = name.removeprefix("origin.").partition("=")
        return (
            "learned-origin",
            {"field": _ORIGIN_FIELDS.get(fact, fact), "equals": value},
            {"times": 1},
        )
    if name.startswith("profile.title~"):
        word = name.partition("~")[2]
        return "learned-fit", {"field": "profile.title", "regex": rf"\b{re.escape(word)}\b"}, None
    if "~" in name:
        fact, _, bucket = name.partition("~")
        if bucket == "0":
            return "learned-fit", {"field": fact, "equals": 0}, None
        if bucket == "<0":
            return "learned-fit", {"field": fact, "below": 0}, None
        low, _, high = bucket.partition("-")
        return "learned-fit", {"field": fact, "at_least": int(low), "below": int(high) + 1}, None
    if "=" in name:
        fact, _, value = name.partition("=")
        equals: Any = True if value == "true" else value
        return "learned-fit", {"field": fact, "equals": equals}, None
    return None


def _unique_id(name: str, ids: set[str]) -> str:
    base = "learned-" + (re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:50] or "fact")
    rule_id, n = base, 2
    while rule_id in ids:
        rule_id, n = f"{base}-{n}", n + 1
    ids.add(rule_id)
    return rule_id


def _rounded(points: float) -> int:
    """Whole points; fives from 10 up; within the validator's +-1000."""
    value = round(points / 5) * 5 if abs(points) >= 10 else round(points)
    return max(-1000, min(1000, int(value)))


def _render(
    rules: RuleSet,
    *,
    version: str,
    groups: list[dict[str, Any]],
    rules_documents: list[tuple[dict[str, Any], str]],
    model: LikelihoodModel,
) -> str:
    def dump(value: Any) -> str:
        return yaml.safe_dump(value, sort_keys=False, width=100, allow_unicode=True)

    lines = [
        f"# Rules proposed from what model trained at {model.trained_at:%Y-%m-%d %H:%M} UTC learned",
        f"# from {model.training.leads} leads with an outcome, on rules {rules.version}.",
        "# Points follow the learned effects (signs kept, scaled to the live rules' range,",
        "# rounded); the comment above each rule says what changed and why. Simulate before",
        "# applying: python -m services.score simulate <this file>",
    ]
    text = "\n".join(lines) + "\n" + dump({"version": version}) + dump({"groups": groups})
    text += "rules:\n"
    for document, comment in rules_documents:
        if comment:
            text += f"  # {comment}\n"
        text += indent(dump([document]), "  ")
    rest = rules.model_dump(by_alias=True, exclude_none=True, mode="json",
                            include={"caps", "grades", "bands", "mql", "lifecycle"})  # fmt: skip
    return text + dump(rest)
