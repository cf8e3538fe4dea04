"""Reading a page's filters from its query string: a period (`since`, `until`, ISO dates,
inclusive; by default the last `DEFAULT_DAYS` days) and exact values. A bad value is a
`BadFilter` naming the parameter (400), never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from services.console.queries import DIMENSIONS, CohortFilter

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366
MAX_VALUE = 200


class BadFilter(ValueError):
    pass


def period_of(query: Mapping[str, str], *, today: date | None = None) -> tuple[date, date]:
    today = today or datetime.now(UTC).date()
    until = _day(query, "until") or today
    since = _day(query, "since") or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise BadFilter("since: the period starts after it ends")
    if (until - since).days >= MAX_DAYS:
        raise BadFilter(f"since: a period is at most {MAX_DAYS} days")
    return since, until


def value_of(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if len(value) > MAX_VALUE:
        raise BadFilter(f"{name}: at most {MAX_VALUE} characters")
    return value or None


def cohort_of(query: Mapping[str, str], *, today: date | None = None) -> CohortFilter:
    since, until = period_of(query, today=today)
    values = {name: value_of(query, name) for name in DIMENSIONS}
    return CohortFilter(since=since, until=until, **values)


def _day(query: Mapping[str, str], name: str) -> date | None:
    text = query.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name}: a date is YYYY-MM-DD, not {text[:40]!r}") from None
