"""An OpenAPI-driven fuzz run (schemathesis) against ingest running as its own process with the
real broker: bodies that fit the documented schemas and bodies that break them, on every
tracking endpoint, with a valid write key. No input may yield a 5xx."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.openapi import from_dict

from services.ingest.openapi import ENDPOINTS
from tests.fixtures.pipeline import WRITE_KEY, Pipeline

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
EXAMPLES_PER_OPERATION_AND_MODE = 30  # 7 endpoints x 2 modes x 30: about 25 s here
# 429: the fuzzer's calls without a valid key add up to too many failed authentications.
ANSWERS = {200, 400, 401, 429}


@pytest.mark.slow  # about 21 s: `make test-slow` (make test stays within 20 minutes)
async def test_no_input_from_the_openapi_document_yields_a_server_error(pipeline: Pipeline) -> None:
    await pipeline.start("ingest")
    async with httpx.AsyncClient(base_url=pipeline.ingest_url) as client:
        document = (await client.get("/openapi.json")).json()
    schema = from_dict(document)
    tracking = {f"/v1/{name}" for name in ENDPOINTS}  # the lead-import API is fuzzed apart
    results: list[Any] = list(schema.get_all_operations())  # Ok | Err; an Err raises here
    operations = [result.ok() for result in results]
    operations = [operation for operation in operations if operation.path in tracking]
    assert {operation.path for operation in operations} == tracking
    seen: dict[int, int] = {}

    def fuzz(operation: Any, mode: schemathesis.GenerationMode) -> None:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=pipeline.ingest_url, headers=AUTH)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code in ANSWERS, (
                f"{operation.label} {mode.value}: {response.status_code} {response.text[:500]}"
                f" for {case.body!r:.500}"
            )

        call()

    for operation in operations:
        for mode in schemathesis.GenerationMode:
            await asyncio.to_thread(fuzz, operation, mode)

    # Both outcomes were exercised: the fuzzing reached acceptance, not only refusals.
    assert seen.get(200, 0) > 0, seen
    assert seen.get(400, 0) > 0, seen
