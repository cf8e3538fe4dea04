"""What a lead's CRM outcomes teach: converted or not, and as of which cut-off (`label`).

The cut-off is the time the lead's features are taken at, and it precedes everything the
label is made of, so nothing the model learns from was known only because of the outcome:

- `days_after_first_seen` (default): `cutoff_days` after the lead's first message, or earlier
  at the first thing sales reported about it (an accepted, a rejected...): once sales works a
  lead, what it does next (a meeting booked, a contract page read) is sales' doing, not a sign
  marketing could have read. This is the likelihood a new lead gets.
- `mql`: the time the lead first became an MQL (leads that never did are not used), the
  message that made it one included: which MQLs convert, the question an SDR team asks.

Positive: an outcome in `positive` (default won) within `horizon_days` after the cut-off.
Negative: an outcome in `negative` (lost, disqualified), or no positive outcome within the
horizon. A lead is labelled only once its horizon is over, whatever its outcome: among the
leads still inside theirs, the quick outcomes (often wins) are known and the slow ones not yet,
so using them would tilt the newest leads, the test leads, towards whichever comes first.
Only outcomes that hold count (applied, or confirming the stage); one the lifecycle refused (a
customer lost: `lifecycle.sales_move`) or that a later one superseded does not. A lead with
both a positive and a negative outcome (won then lost, or lost then won back) is positive when
it won within the horizon, and is counted as contradicting in the training report. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HOLDING = frozenset({"applied", "unchanged"})


class OutcomePolicy(BaseModel):
    """What counts as converted, and the cut-off (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    positive: tuple[str, ...] = ("won",)
    negative: tuple[str, ...] = ("lost", "disqualified")
    horizon_days: float = Field(default=90, gt=0)
    cutoff: Literal["days_after_first_seen", "mql"] = "days_after_first_seen"
    cutoff_days: float = Field(default=30, gt=0)


@dataclass(frozen=True)
class SalesOutcome:
    """One CRM outcome as score recorded it (`score.feedback`)."""

    outcome: str
    result: str
    at: datetime


@dataclass(frozen=True)
class Labelled:
    """`positive` as of `cutoff` (the time the likelihood is about: training and test leads
    are split by it); `decided_at`: when the outcome came (or the horizon ended)."""

    positive: bool
    cutoff: datetime
    decided_at: datetime
    contradicting: bool = False
    # the message at the cut-off itself counts (`mql`: the one that made the lead an MQL)
    inclusive: bool = False


@dataclass(frozen=True)
class Unlabelled:
    reason: Literal["still open", "never an mql", "nothing before the cut-off"]


def label(
    *,
    first_seen: datetime,
    mql_at: datetime | None,
    outcomes: Sequence[SalesOutcome],
    policy: OutcomePolicy,
    now: datetime,
) -> Labelled | Unlabelled:
    """The lead's label and cut-off under `policy`, as of `now`."""
    if policy.cutoff == "mql":
        if mql_at is None:
            return Unlabelled("never an mql")
        cutoff = mql_at
    else:
        cutoff = first_seen + timedelta(days=policy.cutoff_days)
    if outcomes:
        cutoff = min(cutoff, min(outcome.at for outcome in outcomes))
    inclusive = policy.cutoff == "mql" and cutoff == mql_at
    if cutoff < first_seen or (cutoff == first_seen and not inclusive):
        return Unlabelled("nothing before the cut-off")
    end = cutoff + timedelta(days=policy.horizon_days)
    holding = sorted((o for o in outcomes if o.result in HOLDING), key=lambda o: o.at)
    won = [o.at for o in holding if o.outcome in policy.positive and o.at <= end]
    lost = [o.at for o in holding if o.outcome in policy.negative and o.at <= end]
    contradicting = any(o.outcome in policy.positive for o in outcomes) and any(
        o.outcome in policy.negative for o in outcomes
    )
    if now < end:
        return Unlabelled("still open")
    if won:
        return Labelled(True, cutoff, won[0], contradicting, inclusive)
    if lost:
        return Labelled(False, cutoff, lost[0], contradicting, inclusive)
    return Labelled(False, cutoff, end, contradicting, inclusive)
