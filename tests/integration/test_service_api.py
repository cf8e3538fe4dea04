"""The services' own endpoints against the real processes: personal data and simulations only
for authenticated clients, on the API port; the scrape port serves health and metrics only."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets

import httpx

from devstack.processes import ServiceProcess, StackAddresses
from shared.secret_hashes import secret_hash
from tests.fixtures.pipeline import Pipeline

EXPLAIN = "/v1/leads/maria@northwind.io/explain"


async def test_personal_data_is_no_longer_served_on_the_scrape_port(pipeline: Pipeline) -> None:
    """The monitoring namespace reaches the health port: it must not reach a lead's data."""
    await pipeline.start("score", "router")
    async with httpx.AsyncClient(timeout=10) as client:
        explain = await client.get(pipeline.addresses.health_url("score", EXPLAIN))
        routing = await client.get(
            pipeline.addresses.health_url("router", "/v1/leads/maria@northwind.io/routing")
        )
        simulate = await client.post(
            pipeline.addresses.health_url("score", "/v1/rules/simulations"),
            json={"yaml": "rules: []"},
        )
        docs = await client.get(pipeline.addresses.health_url("score", "/openapi.json"))
        metrics = await client.get(pipeline.addresses.health_url("score", "/metrics"))
        ready = await client.get(pipeline.addresses.health_url("score", "/readyz"))

    assert (explain.status_code, routing.status_code, simulate.status_code) == (404, 404, 404)
    assert docs.status_code == 404
    assert (metrics.status_code, ready.status_code) == (200, 200)


async def test_reading_a_lead_without_a_token_is_refused_and_reveals_nothing(
    pipeline: Pipeline,
) -> None:
    """Whether the email is known or not, and whatever the guess, the answer is the same 401."""
    await pipeline.start("score", "router")
    answers = []
    async with httpx.AsyncClient(timeout=10) as client:
        for headers in (
            {},
            {"Authorization": "Bearer " + secrets.token_urlsafe(32)},
            {"Authorization": "Basic bG9jYWwtZGV2LWtleTo="},  # the website's write key
            {"Authorization": "Bearer " + pipeline.addresses.api_token[:-1]},
        ):
            for url in (
                pipeline.addresses.api_url("score", EXPLAIN),
                pipeline.addresses.api_url("score", "/v1/leads/nobody@nowhere.io/explain"),
                pipeline.addresses.api_url("router", "/v1/leads/maria@northwind.io/routing"),
            ):
                answer = await client.get(url, headers=headers)
                answers.append(
                    (answer.status_code, answer.json(), answer.headers.get("www-authenticate"))
                )
        simulate = await client.post(
            pipeline.addresses.api_url("score", "/v1/rules/simulations"), json={"yaml": "rules: []"}
        )

    assert {answer for answer in map(repr, answers)} == {repr(answers[0])}
    assert answers[0][0] == 401
    assert answers[0][2] == "Bearer"
    assert "bearer token" in answers[0][1]["error"]
    assert simulate.status_code == 401


async def test_a_client_reads_with_its_token_and_cannot_use_a_scope_it_lacks(
    pipeline: Pipeline,
) -> None:
    reader = secrets.token_urlsafe(32)
    clients = {"crm-reader": {"token_sha256": secret_hash(reader), "scopes": ["leads:read"]}}
    addresses: StackAddresses = dataclasses.replace(
        pipeline.addresses,
        service_env={"score": {"LEADFLOW_API_CLIENTS": json.dumps(clients)}},
    )
    score = ServiceProcess("score", addresses, log_file=pipeline.log_dir / "score.log").start()
    pipeline.processes["score"] = score
    await asyncio.to_thread(score.wait_ready)
    headers = {"Authorization": f"Bearer {reader}"}
    async with httpx.AsyncClient(base_url=addresses.api_url("score"), timeout=10) as client:
        unknown = await client.get("/v1/leads/nobody@nowhere.io/explain", headers=headers)
        simulate = await client.post(
            "/v1/rules/simulations", json={"yaml": "rules: []"}, headers=headers
        )
        stack_token = await client.get(EXPLAIN, headers=addresses.api_headers)

    assert unknown.status_code == 404  # authenticated: now it may say whom it does not know
    assert simulate.status_code == 403
    assert simulate.json() == {"error": "client 'crm-reader' lacks the scope rules:simulate"}
    assert stack_token.status_code == 401  # only the configured clients: no other token works
