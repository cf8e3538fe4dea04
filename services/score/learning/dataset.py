"""The training examples of every identified lead, read from score's stored history.

Leads are read in pages (`PAGE` at a time, keyset by lead id: each page's histories,
outcomes and MQL times in one query each), turned into examples (`examples.lead_example`) and
added to the sparse matrix; only that matrix grows with the number of leads. Reads only: it
runs beside live scoring on its own connection and takes no lock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.engine.ruleset import RuleSet
from services.score.learning.examples import Example, lead_example
from services.score.learning.settings import TrainingSettings
from services.score.learning.training import Examples

PAGE = 500


@dataclass
class Dataset:
    examples: Examples = field(default_factory=Examples)
    covered_kinds: set[str] = field(default_factory=set)  # behaviour kinds a rule counted for
    unlabelled: Counter[str] = field(default_factory=Counter)  # why leads had no example
    leads: int = 0

    def notes(self) -> list[str]:
        return [f"{count} leads not used: {why}" for why, count in sorted(self.unlabelled.items())]


async def read_dataset(
    sessions: async_sessionmaker[AsyncSession],
    *,
    rules: RuleSet,
    settings: TrainingSettings,
    now: datetime,
) -> Dataset:
    """Every identified lead's example as of `now` (see the module doc)."""
    dataset = Dataset()
    after = ""
    while True:
        async with sessions() as session:
            lead_ids = await repository.identified_leads_after(session, after, limit=PAGE)
            if not lead_ids:
                return dataset
            histories = await repository.load_histories(session, lead_ids)
            outcomes = await repository.sales_outcomes(session, lead_ids)
            mql_times = await repository.first_mql_times(session, lead_ids)
        for lead_id in lead_ids:
            dataset.leads += 1
            example = lead_example(
                items=histories[lead_id],
                outcomes=outcomes.get(lead_id, []),
                mql_at=mql_times.get(lead_id),
                rules=rules,
                policy=settings.policy,
                windows_days=settings.windows_days,
                now=now,
                covered_kinds=dataset.covered_kinds,
            )
            if isinstance(example, Example):
                dataset.examples.add(
                    example.features, label=example.label, rules_total=example.rules_total
                )
            else:
                dataset.unlabelled[example.reason] += 1
        after = lead_ids[-1]
