"""The rules editor's form: a scoring rules document (as score stores it) shown as fields, and
the fields a person changed applied back to the document. Pure, no I/O: score validates the
result (`/v1/rules/check`), with the same validators as a rules file, and its errors name the
dotted field ("rules.3.points: ..."), which is the name of the form's input for it.

What the form edits (every other part of the document is kept as it is, and the YAML pane
edits everything):
- per rule: points, reason, limit (times, within days), and a simple condition (one field,
  one operator, a value); a rule may be deleted. A combined condition (all / any / not /
  count) is shown in words and edited in YAML;
- a new rule: id, group, field, operator, value, points, reason, limit;
- per group: cap, decay (half-life or linear days);
- the caps, grades, bands, MQL thresholds and the recycle delay.

An input left empty removes an optional setting (a limit, a cap, a threshold). A value is read
as YAML reads a scalar (`true`, `12`, `1.5`, text), so the form means what the file would; a
number field's text that is no number is passed on as text for score to refuse by name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date
from typing import Any

import yaml

OPERATORS = ("equals", "in", "contains", "regex", "at_least", "below", "exists")
"""The operators of a simple condition, as the form offers them (`in`: values separated by
commas)."""
OPERATOR_WORDS = {
    "equals": "is",
    "in": "is one of",
    "contains": "contains",
    "regex": "matches",
    "at_least": "is at least",
    "below": "is below",
    "exists": "is known",
}
THRESHOLDS = {
    "caps": ("fit", "behaviour"),
    "grades": ("A", "B", "C"),
    "bands": ("1", "2", "3"),
    "mql": ("min_fit", "min_behaviour", "min_total", "min_likelihood"),
    "lifecycle": ("recycle_after_days_below",),
}
"""The top-level settings the form edits, section -> keys."""


def simple_condition(when: Any) -> tuple[str, str, str] | None:
    """(field, operator, value as the form shows it) of a one-field condition; None for a
    combined one (all / any / not / count) or a range (at_least and below together)."""
    if not isinstance(when, dict) or "field" not in when:
        return None
    operators = [name for name in OPERATORS if name in when]
    if len(operators) != 1 or len(when) != 2:
        return None
    operator = operators[0]
    value = when[operator]
    shown = ", ".join(_text(v) for v in value) if isinstance(value, list) else _text(value)
    return str(when["field"]), operator, shown


def describe(when: Any) -> str:
    """A condition in words: `event is one of Demo Requested, Demo Request Submitted`,
    `all of (...; ...)`, `not (...)`, `counted email-delivered at least 10 times in 60 days`."""
    if not isinstance(when, dict):
        return str(when)
    if "all" in when:
        return "all of (" + "; ".join(describe(part) for part in when["all"]) + ")"
    if "any" in when:
        return "any of (" + "; ".join(describe(part) for part in when["any"]) + ")"
    if "not" in when:
        return f"not ({describe(when['not'])})"
    if "count" in when:
        counted = when["count"]
        names = ", ".join(counted) if isinstance(counted, list) else str(counted)
        window = f" in {_text(when['within_days'])} days" if "within_days" in when else ""
        bounds = [
            f"{OPERATOR_WORDS[k]} {_text(when[k])}" for k in ("at_least", "below") if k in when
        ]
        return f"counted {names} {' and '.join(bounds)} times{window}"
    parts = []
    for operator in OPERATORS:
        if operator in when:
            value = when[operator]
            if operator == "exists":
                parts.append("is known" if value else "is not known")
                continue
            shown = ", ".join(_text(v) for v in value) if isinstance(value, list) else _text(value)
            parts.append(f"{OPERATOR_WORDS[operator]} {shown}")
    return f"{when.get('field', '?')} {' and '.join(parts)}"


def apply_form(document: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, Any]:
    """`document` with the form's fields applied (see the module doc); `form` maps input names
    (dotted paths: `rules.3.points`, `groups.1.cap`, `mql.min_total`, `new.field`...) to what
    was typed. Inputs the form did not send leave their part alone. Returns a new document."""
    result = copy.deepcopy(dict(document))
    rules = list(result.get("rules") or [])
    kept = []
    for index, rule in enumerate(rules):
        prefix = f"rules.{index}."
        if form.get(prefix + "delete") == "on":
            continue
        kept.append(_apply_rule(rule, form, prefix))
    new_rule = _new_rule(form)
    if new_rule is not None:
        kept.append(new_rule)
    result["rules"] = kept
    for index, group in enumerate(result.get("groups") or []):
        prefix = f"groups.{index}."
        _set_optional(group, "cap", form, prefix + "cap")
        if prefix + "decay.kind" in form:
            group.pop("decay", None)
            kind, days = form[prefix + "decay.kind"], form.get(prefix + "decay.days", "")
            if kind in ("half_life_days", "linear_days") and days.strip():
                group["decay"] = {kind: _scalar(days)}
    for section, keys in THRESHOLDS.items():
        part = dict(result.get(section) or {})
        touched = False
        for key in keys:
            name = f"{section}.{key}"
            if name in form:
                touched = True
                _set_optional(part, key, form, name)
        if touched:
            if part:
                result[section] = part
            else:
                result.pop(section, None)
    return result


def _apply_rule(rule: dict[str, Any], form: Mapping[str, str], prefix: str) -> dict[str, Any]:
    rule = dict(rule)
    if prefix + "points" in form:
        rule["points"] = _scalar(form[prefix + "points"])
    if prefix + "reason" in form:
        rule["reason"] = form[prefix + "reason"].strip()
    if prefix + "limit.times" in form:
        rule.pop("limit", None)
        limit = _limit(
            form.get(prefix + "limit.times", ""), form.get(prefix + "limit.within_days", "")
        )
        if limit is not None:
            rule["limit"] = limit
    if prefix + "when.field" in form and simple_condition(rule.get("when")) is not None:
        rule["when"] = _condition(
            form[prefix + "when.field"],
            form.get(prefix + "when.op", ""),
            form.get(prefix + "when.value", ""),
        )
    return rule


def _new_rule(form: Mapping[str, str]) -> dict[str, Any] | None:
    """The new rule the form adds, or None when its id is left empty."""
    rule_id = form.get("new.id", "").strip()
    if not rule_id:
        return None
    rule: dict[str, Any] = {
        "id": rule_id,
        "group": form.get("new.group", "").strip(),
        "points": _scalar(form.get("new.points", "")),
        "reason": form.get("new.reason", "").strip(),
        "when": _condition(
            form.get("new.field", ""), form.get("new.op", ""), form.get("new.value", "")
        ),
    }
    limit = _limit(form.get("new.limit.times", ""), form.get("new.limit.within_days", ""))
    if limit is not None:
        rule["limit"] = limit
    return rule


def _condition(field: str, operator: str, value: str) -> dict[str, Any]:
    """A simple condition from the form; an unknown operator is kept for score to refuse."""
    field = field.strip()
    if operator == "in":
        return {"field": field, "in": [_scalar(part) for part in value.split(",") if part.strip()]}
    if operator == "exists":
        return {"field": field, "exists": value.strip().lower() not in ("false", "no", "0")}
    if operator in ("contains", "regex"):
        return {"field": field, operator: value.strip()}
    return {"field": field, operator or "equals": _scalar(value)}


def _limit(times: str, within_days: str) -> dict[str, Any] | None:
    if not times.strip():
        return None
    limit: dict[str, Any] = {"times": _scalar(times)}
    if within_days.strip():
        limit["within_days"] = _scalar(within_days)
    return limit


def _set_optional(part: dict[str, Any], key: str, form: Mapping[str, str], name: str) -> None:
    if name not in form:
        return
    typed = form[name].strip()
    if typed:
        part[key] = _scalar(typed)
    else:
        part.pop(key, None)


def _scalar(text: str) -> Any:
    """What YAML reads `text` as (a number, true/false, text); text that YAML would read as a
    structure or cannot read stays text."""
    text = text.strip()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, dict | list | date):
        return text  # (a date or time is text in a rules document: JSON has no date)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
