"""A lead's routing history as an operator reads it (`python -m services.router history`):
who the lead is, then its decisions, suppressions and SLA breaches as tables. Pure: takes what
`repository.lead_history` returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.operator import table


def render_history(history: dict[str, Any]) -> str:
    decisions: list[dict[str, Any]] = history["decisions"]
    # Who the lead is, as its newest decisions say (a later decision may lack a name).
    who = {
        key: next((d[key] for d in reversed(decisions) if d.get(key)), None)
        for key in ("email", "name", "company")
    }
    heading = f"lead {history['lead_id']}" + (f" <{who['email']}>" if who["email"] else "")
    heading += "".join(f", {who[key]}" for key in ("name", "company") if who[key])
    parts = [heading, ""]
    scrubbed = [
        f"{count} {what}"
        for what in ("decisions", "suppressions")
        if (count := sum(1 for row in history[what] if row.get("scrubbed_at")))
    ]
    if scrubbed:
        # Housekeeping removed their personal parts past the retention (email, name, company,
        # reasons): the rows stay as they were otherwise.
        parts.insert(1, f"personal data removed past retention: {' and '.join(scrubbed)}")
    parts.append(f"decisions ({len(decisions)})")
    if decisions:
        parts.append(
            table(
                [
                    "decided at",
                    "route",
                    "to",
                    "stage",
                    "score",
                    "speed-to-lead",
                    "routing",
                    "closed",
                ],
                [
                    [
                        _time(d.get("decided_at")),
                        d.get("route"),
                        _target(d),
                        d.get("stage"),
                        _score(d.get("score")),
                        f"{d['speed_to_lead_ms']} ms"
                        if d.get("speed_to_lead_ms") is not None
                        else None,
                        d.get("routing_version"),  # None: before routing was versioned
                        _closed(d),
                    ]
                    for d in decisions
                ],
            )
        )
    suppressions = history["suppressions"]
    parts += ["", f"suppressions ({len(suppressions)})"]
    if suppressions:
        parts.append(
            table(
                ["recorded at", "stage", "reason"],
                [[_time(s["recorded_at"]), s["stage"], s["reason"]] for s in suppressions],
            )
        )
    breaches = history["sla_breaches"]
    parts += ["", f"SLA breaches ({len(breaches)})"]
    if breaches:
        parts.append(
            table(
                ["breached at", "due at", "owner", "queue", "decision"],
                [
                    [
                        _time(b["breached_at"]),
                        _time(b["due_at"]),
                        b["owner_id"],
                        b["queue"],
                        b["decision_id"],
                    ]
                    for b in breaches
                ],
            )
        )
    return "\n".join(parts)


def _target(decision: dict[str, Any]) -> str | None:
    owner = decision.get("owner")
    if owner:
        return f"{owner['name']} ({owner['team']})"
    if decision.get("queue"):
        return f"queue {decision['queue']}"
    return decision.get("track")


def _score(score: dict[str, Any] | None) -> str | None:
    return None if not score else f"{score['priority']} {score['total']}"


def _closed(decision: dict[str, Any]) -> str | None:
    if not decision.get("closed_at"):
        return None
    return f"{_time(decision['closed_at'])} {decision.get('closed_reason') or ''}".strip()


def _time(value: str | None) -> str | None:
    """ISO times as 'YYYY-MM-DD HH:MM:SS' (UTC, as stored)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
