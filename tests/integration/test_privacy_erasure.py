"""Erasure end to end, through the real broker and PostgreSQL with every service as a process:
a person who arrived anonymously, identified, was merged with a second identity, became an MQL,
was routed to an SDR and was accepted by sales is erased by email through enrich's API. Then no
store of any service holds anything of hers, every service reported its part, her new calls are
dropped and counted, and everybody else's scores and decisions are as they were."""

from __future__ import annotations

import asyncpg
import pytest

from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.privacy import (
    SERVICES,
    Person,
    arrives_and_asks_for_a_demo,
    erase_a_person_and_prove_it,
    erasure_api,
    sdr_decision,
    traces_of,
)


async def test_an_erased_person_is_gone_from_every_store_and_not_collected_again(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start(*SERVICES)
    await erase_a_person_and_prove_it(pipeline, db)


@pytest.mark.slow  # about 20 s: `make test-slow` (make test stays within 20 minutes)
async def test_a_service_that_was_down_does_its_part_when_it_comes_back(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start(*SERVICES)
    ada = Person("Ada", "Lovelace", "initech.com")
    await arrives_and_asks_for_a_demo(pipeline, db, ada)
    await sdr_decision(pipeline, ada.email)
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM console.leads WHERE email = $1", ada.email),
        "the console has her",
    )
    assert pipeline.stop("console") == 0

    asked = await erasure_api(
        pipeline, "POST", "/v1/erasures",
        json={"user_id": ada.user_id, "reason": "GDPR art. 17", "by": "dpo"},
    )  # fmt: skip
    assert asked.status_code == 202, asked.text
    path = f"/v1/erasures/{asked.json()['request_id']}"

    async def parts() -> dict[str, str]:
        status = (await erasure_api(pipeline, "GET", path)).json()
        return {service: part["status"] for service, part in status["services"].items()}

    waiting = {"enrich": "complete", "score": "complete", "router": "complete",
               "console": "pending", "sync": "complete"}  # fmt: skip
    await eventually(parts, "every running service did its part", until=lambda p: p == waiting)
    assert (await erasure_api(pipeline, "GET", path)).json()["status"] == "partial"
    assert await traces_of(db, [ada.email], schemas=["console"])  # not yet

    await pipeline.start("console")
    await eventually(
        parts, "the console did its part", until=lambda p: set(p.values()) == {"complete"}
    )
    assert await traces_of(db, ada.traces) == []
