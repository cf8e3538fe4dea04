"""A load preview: what a scoring change would do to the sales teams' load, under the live
routing. Pure: no I/O, no clock (`now` is an argument).

Score's rules simulation finds the leads that would become MQL (`gained`) and those that would
drop below MQL (`lost`); the console asks the router what that means for each team and rep
(`POST /v1/routing/preview`):

- a **gained** lead is routed as if it became an MQL now: its latest stage change the router
  stored, moved to `mql` (its profile, account, consent and score as stored: the new score is
  score's to know, so a territory or an SLA that depends on the grade may differ), through
  `choose_route` and `assign_sdr`, with the reps' loads counted in memory from empty, at `now`
  (working hours and out of office as they are now: at night, most of them go to the queue);
- a **lost** lead leaves whoever has it now: the owner (or queue) of its open sdr decision.

Leads the router knows nothing of are counted as `unknown` by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.router.routing_config import RoutingConfig
from services.router.simulation import Outcome, SimulatedLoads, Tally, outcome_of
from shared.contracts import LifecycleChanged, Stage


@dataclass(frozen=True, slots=True)
class CurrentOwner:
    """Who has a lead now: the owner (or queue) of its newest open sdr decision."""

    lead_id: str
    owner_id: str | None
    owner_name: str | None
    team: str | None
    queue: str | None


def as_new_mql(change: LifecycleChanged) -> LifecycleChanged:
    """The lead's stored change as a move to mql from where that change left it."""
    return change.model_copy(update={"from_stage": change.to_stage, "to_stage": Stage.MQL})


def preview_load(
    *,
    config: RoutingConfig,
    gained: Sequence[LifecycleChanged],
    lost: Sequence[CurrentOwner],
    now: datetime,
) -> dict[str, Any]:
    """Per team, rep and queue: how many `gained` leads each would receive (in the order
    given, round robin from empty loads at `now`) and how many `lost` leads each would give up;
    `gained_not_to_sales`: gained leads the routing would not send to sales (suppressed, a
    nurture track, mql not an sdr trigger)."""
    tally = Tally(("gained", "lost"))
    loads = SimulatedLoads(config)
    for change in gained:
        tally.add("gained", outcome_of(as_new_mql(change), config=config, loads=loads, at=now))
    for owner in lost:
        tally.add(
            "lost",
            Outcome(
                owner_id=owner.owner_id,
                owner_name=owner.owner_name,
                team=owner.team,
                queue=owner.queue,
            ),
        )
    rows = tally.rows()
    return {
        "teams": rows["teams"],
        "reps": rows["reps"],
        "queues": rows["queues"],
        "gained_not_to_sales": rows["not_to_sales"]["gained"],
    }
