"""The service shell on the real broker and PostgreSQL: a stop drains and commits; a drain that
outlasts `shutdown_drain_timeout_s` is cut and commits nothing; a busy port is one line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from devstack.broker import free_port
from services.score.config import ScoreSettings
from shared.codec import encode
from shared.consumer import Message, Output
from shared.contracts import ScoreCommand
from shared.kafka import create_producer
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.topics import SCORE_COMMANDS
from tests.fixtures.infra import REPO, Infrastructure
from tests.fixtures.pipeline import Pipeline

GROUP_SERVICE = "shell-test"


def _service(handler: object) -> Service[ScoreSettings]:
    @asynccontextmanager
    async def start(_: Resources[ScoreSettings]) -> AsyncIterator[Running]:
        yield Running(handler=handler)  # type: ignore[arg-type]

    return Service(
        name=GROUP_SERVICE,
        summary="a consumer of score.commands for the shell's tests",
        settings=ScoreSettings,
        start=start,
        database=Database(schema="score", migrations=REPO / "services" / "score" / "migrations"),
        subscriptions=[SCORE_COMMANDS],
    )


def _settings(infrastructure: Infrastructure, prefix: str, database_url: str) -> ScoreSettings:
    return ScoreSettings(
        database=DatabaseSettings(url=database_url),
        kafka=KafkaSettings(
            bootstrap_servers=infrastructure.kafka_bootstrap,
            topic_prefix=prefix,
            session_timeout_ms=3000,  # the broker holds a join this long
            heartbeat_interval_ms=500,
        ),
        consumer=ConsumerSettings(shutdown_drain_timeout_s=1.0),
        health_port=free_port(),
    )


async def _send_command(settings: ScoreSettings) -> None:
    producer = create_producer(settings.kafka, client_id="shell-test")
    await producer.start()
    try:
        command = ScoreCommand(
            command_id="c-1", kind="reevaluate", lead_id="lead-1", at=datetime.now(UTC)
        )
        await producer.send_and_wait(
            SCORE_COMMANDS.full_name(settings.kafka.topic_prefix), encode(command), key=b"lead-1"
        )
    finally:
        await producer.stop()


async def _committed(settings: ScoreSettings) -> dict[int, int | None]:
    """Kafka's committed offsets of the shell test's group on score.commands, per partition."""
    topic = SCORE_COMMANDS.full_name(settings.kafka.topic_prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=f"{settings.kafka.topic_prefix}leadflow-{GROUP_SERVICE}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
    finally:
        await consumer.stop()


async def _stored_offsets(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM score.consumer_offsets"))


async def test_a_stop_drains_the_batch_in_flight_and_commits_it(
    infrastructure: Infrastructure, topic_prefix: str, database_url: str, db: asyncpg.Connection
) -> None:
    settings = _settings(infrastructure, topic_prefix, database_url)
    handled = asyncio.Event()

    async def handler(
        messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> list[Output]:
        handled.set()
        await asyncio.sleep(0.3)  # still in flight when the stop comes
        return []

    stopping = asyncio.Event()
    serving = asyncio.create_task(_service(handler).serve(settings, stopping=stopping))
    await _send_command(settings)
    await asyncio.wait_for(handled.wait(), timeout=60)
    stopping.set()
    await asyncio.wait_for(serving, timeout=30)
    assert await _stored_offsets(db) == 1
    assert [offset for offset in (await _committed(settings)).values() if offset] == [1]


async def test_a_drain_longer_than_its_timeout_is_cut_logged_and_commits_nothing(
    infrastructure: Infrastructure,
    topic_prefix: str,
    database_url: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(infrastructure, topic_prefix, database_url)
    entered = asyncio.Event()

    async def handler(
        messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> list[Output]:
        entered.set()
        await asyncio.Event().wait()  # a batch that never finishes (a stuck statement, say)
        return []

    stopping = asyncio.Event()
    serving = asyncio.create_task(_service(handler).serve(settings, stopping=stopping))
    await _send_command(settings)
    await asyncio.wait_for(entered.wait(), timeout=60)
    caplog.set_level(logging.ERROR, logger="shared.service")
    stopped_at = asyncio.get_running_loop().time()
    stopping.set()
    await asyncio.wait_for(serving, timeout=30)
    # cut after the 1 s timeout (plus the bounded leave of the group), not left hanging
    assert asyncio.get_running_loop().time() - stopped_at < 10
    assert "the drain took longer than 1s (shutdown_drain_timeout_s): cut" in caplog.text
    assert await _stored_offsets(db) == 0
    assert all(offset is None for offset in (await _committed(settings)).values())


def test_a_second_service_on_a_busy_port_says_so_in_one_line(
    tmp_path: Path, database_url: str
) -> None:
    """(A database that answers: the router adopts its routing file before it listens.)"""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "services.router", "run"],
            cwd=REPO,
            env={
                **os.environ,
                "LEADFLOW_DATABASE_URL": database_url,
                "LEADFLOW_ROUTER_HEALTH_PORT": str(port),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: router cannot listen: 127.0.0.1:{port} (LEADFLOW_ROUTER_HEALTH_PORT) is already"
        " in use; is router already running? (`make status` shows the local stack)"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("service", "paths"),
    [
        ("ingest", {"/v1/batch", "/v1/identify", "/v1/leads/import"}),
        ("score", {"/v1/leads/{key}/explain", "/v1/rules/simulations", "/v1/rules/rescore"}),
        ("router", {"/v1/leads/{key}/routing"}),
    ],
)
async def test_every_api_documents_itself_at_docs_with_nothing_from_outside(
    pipeline: Pipeline, service: str, paths: set[str]
) -> None:
    """Swagger UI at /docs loads only from the service itself (a cluster has no internet), and
    the OpenAPI document it shows lists the service's endpoints."""
    await pipeline.start(service)
    addresses = pipeline.addresses
    # ingest: on its public port, which serves docs in the local stack only (as here).
    base = (
        f"http://127.0.0.1:{addresses.ingest_port}"
        if service == "ingest"
        else addresses.api_url(service)
    )
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        linked = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        linked += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
        assert linked, page.text
        for url in linked:
            assert url.startswith("/"), f"/docs of {service} loads {url} from elsewhere"
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
        document = (await client.get("/openapi.json")).json()
    assert paths <= set(document["paths"])
