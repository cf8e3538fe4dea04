"""Erasure end to end, through the real broker and PostgreSQL with every service as a process:
a person who arrived anonymously, identified, was merged with a second identity, became an MQL,
was routed to an SDR and was accepted by sales is erased by email through enrich's API. Then no
store of any service holds anything of hers, every service reported its part, her new calls are
dropped and counted, and everybody else's scores and decisions are as they were."""

from __future__ import annotations

import asyncpg

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.privacy import SERVICES, erase_a_person_and_prove_it


async def test_an_erased_person_is_gone_from_every_store_and_not_collected_again(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start(*SERVICES)
    await erase_a_person_and_prove_it(pipeline, db)
