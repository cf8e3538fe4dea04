"""Reps' availability in two clicks: a rep's `active`, `out_of_office`, `weight` or `daily_cap`
changed on the live routing, and the reps as a page listing them shows them. Pure: no I/O, no
clock (`now` is an argument).

A change is made on the live version's *document* (what was written, file or draft), not on
the parsed configuration: the new version keeps every other line as it was (a rep's inherited
time zone stays inherited). The result is validated as any draft is (`RoutingConfig`), by the
caller, before it is saved.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt

from services.router.assignment import away_reason, local_day
from services.router.routing_config import OutOfOffice, RoutingConfig


class UnknownRep(LookupError):
    """The routing has no rep with this id; nothing was changed."""

    def __init__(self, rep_id: str) -> None:
        super().__init__(f"the live routing has no rep {rep_id!r}")
        self.rep_id = rep_id


class RepChange(BaseModel):
    """What changes of one rep; a field left out stays as it is. `daily_cap: null` removes the
    cap; `out_of_office` replaces the rep's whole list (`[]`: back in office). The values are
    checked with the whole routing (`weight` at least 1, `daily_cap` not negative)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    active: StrictBool | None = None
    out_of_office: list[OutOfOffice] | None = None
    weight: StrictInt | None = None
    daily_cap: StrictInt | None = None

    def fields(self) -> dict[str, Any]:
        """The rep's fields to set, as they are written in a routing document (a subclass's
        own fields, such as a request's note, are not the rep's)."""
        return self.model_dump(
            mode="json", by_alias=True, exclude_unset=True, include=set(RepChange.model_fields)
        )


def with_rep_changed(document: Mapping[str, Any], rep_id: str, change: RepChange) -> dict[str, Any]:
    """A copy of the routing `document` in which rep `rep_id` has the fields `change` sets
    (everything else as it was; `document` itself is left alone). `UnknownRep` if no team has
    the rep. Not validated: see the module doc."""
    changed = copy.deepcopy(dict(document))
    teams = changed.get("teams")
    for team in teams if isinstance(teams, list) else ():
        reps = team.get("reps") if isinstance(team, dict) else None
        for rep in reps if isinstance(reps, list) else ():
            if isinstance(rep, dict) and rep.get("id") == rep_id:
                rep.update(change.fields())
                return changed
    raise UnknownRep(rep_id)


def rep_roster(config: RoutingConfig, *, now: datetime) -> list[dict[str, Any]]:
    """Every rep of the routing, team by team in the routing's order: who they are, their
    team, `active`, `weight`, `daily_cap`, `timezone`, `out_of_office`, and whether they are
    `away_today` (inactive, or out of office on their local day at `now`) with why, and
    `local_today`, that local day: the day an out-of-office form should offer, since the router
    judges absences on the rep's calendar, not the server's."""
    roster = []
    for team in config.teams:
        for rep in team.reps:
            away = away_reason(rep, now)
            roster.append(
                {
                    "id": rep.id,
                    "name": rep.name,
                    "email": rep.email,
                    "team": team.name,
                    "active": rep.active,
                    "weight": rep.weight,
                    "daily_cap": rep.daily_cap,
                    "timezone": rep.timezone,
                    "out_of_office": [
                        absence.model_dump(mode="json", by_alias=True)
                        for absence in rep.out_of_office
                    ],
                    "away_today": away is not None,
                    "away_reason": away,
                    "local_today": local_day(rep, now).isoformat(),
                }
            )
    return roster
