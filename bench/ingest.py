"""ingest throughput: events/s through `/v1/batch` (batches of 100) and requests/s through
`/v1/track`, one uvicorn worker (`python -m services.ingest`, uvloop + httptools) producing to
the real broker with acks=all. Beside it, in the same run and measured the same way, a bare
FastAPI endpoint that reads the body and answers `{"success": true}`: the HTTP ceiling of this
machine, so the cost of ingest's own work reads as the difference.

The load comes from a separate process (httpx, several keep-alive connections), so the server
process has its event loop to itself. Goal (issue 3): at least 20,000 events/s through batch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.figures import Figure, at_least, median
from bench.infra import BenchInfra
from devstack.broker import free_port

SECTION = "ingest"
REPO = Path(__file__).resolve().parents[1]
WRITE_KEY = "bench-key"
BATCH_SIZE = 100
SECONDS = 8.0
CONNECTIONS = 16
RUNS = 3
BATCH_GOAL = 20_000

bare_app = FastAPI()
"""The baseline: FastAPI reading a body and answering as ingest does, with no work between."""


@bare_app.post("/v1/batch")
@bare_app.post("/v1/track")
async def _bare(request: Request) -> Response:
    await request.body()
    return Response(b'{"success":true}', media_type="application/json")


def track_call(n: int) -> dict[str, Any]:
    """A track call as analytics-python sends it (about 450 bytes of JSON)."""
    return {
        "type": "track",
        "userId": f"usr-{n % 5000}",
        "anonymousId": f"6f1c2d9e-3b7a-4c55-9e0d-{n:012d}",
        "event": "Pricing Viewed",
        "properties": {"path": "/pricing", "plan_interest": "enterprise", "seats": n % 300},
        "context": {
            "library": {"name": "analytics-python", "version": "2.4.0"},
            "ip": "84.17.52.103",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15",
        },
        "timestamp": "2026-11-23T10:00:00.000+00:00",
    }


def batch_body() -> bytes:
    return orjson.dumps(
        {
            "batch": [track_call(n) for n in range(BATCH_SIZE)],
            "sentAt": "2026-11-23T10:00:01.000+00:00",
        }
    )


def track_body() -> bytes:
    call = track_call(7)
    del call["type"]
    return orjson.dumps(call)


# ---- the measured servers ----------------------------------------------------------------------


def _start_ingest(infra: BenchInfra, prefix: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "LEADFLOW_KAFKA_TOPIC_PREFIX": prefix,
        "LEADFLOW_INGEST_WRITE_KEYS": json.dumps({WRITE_KEY: "bench"}),
        "LEADFLOW_INGEST_PORT": str(port),
        "LEADFLOW_INGEST_LOG_LEVEL": "WARNING",
        # The bench measures throughput, not the rate limit.
        "LEADFLOW_INGEST_RATE_LIMIT_EVENTS_PER_S": "10000000",
        "LEADFLOW_INGEST_RATE_LIMIT_BURST": "10000000",
    }
    return subprocess.Popen([sys.executable, "-m", "services.ingest"], cwd=REPO, env=env)


def _start_bare(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "bench.ingest:bare_app", "--port", str(port),
        "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout_s}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- the load, from its own process ------------------------------------------------------------


async def _load(url: str, body: bytes, *, seconds: float, connections: int) -> dict[str, float]:
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    ok = 0
    failed = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    # Without TCP_NODELAY, headers and body leave in two segments and the second waits for a
    # delayed ACK (~40 ms): the bench would measure Nagle's algorithm, not the server.
    transport = httpx.AsyncHTTPTransport(
        limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        await client.post(url, content=body, headers=headers)  # warm up: connect, first batch
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                response = await client.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"requests_per_s": ok / elapsed, "failed": failed}


def _measure(url: str, body: bytes) -> dict[str, float]:
    """Run the load generator as its own process; its result comes back as JSON."""
    body_file = Path(f"/tmp/leadflow-bench-{os.getpid()}-{len(body)}.json")
    body_file.write_bytes(body)
    try:
        command = [
            sys.executable, "-m", "bench.ingest", "--url", url, "--body", str(body_file),
            "--seconds", str(SECONDS), "--connections", str(CONNECTIONS),
        ]  # fmt: skip
        out = subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=120)
    finally:
        body_file.unlink(missing_ok=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _measure_server(base: str) -> tuple[float, float]:
    """Median events/s through batch and requests/s through track, over `RUNS` runs."""
    batch = [_measure(f"{base}/v1/batch", batch_body()) for _ in range(RUNS)]
    track = [_measure(f"{base}/v1/track", track_body()) for _ in range(RUNS)]
    if any(run["failed"] for run in batch + track):
        raise RuntimeError(f"requests failed during the bench: {batch} {track}")
    return (
        median([run["requests_per_s"] * BATCH_SIZE for run in batch]),
        median([run["requests_per_s"] for run in track]),
    )


async def run(infra: BenchInfra) -> list[Figure]:
    prefix = await infra.fresh_topic_prefix()
    port = free_port()
    ingest = _start_ingest(infra, prefix, port)
    try:
        await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{port}/readyz", ingest)
        batch_rate, track_rate = await asyncio.to_thread(
            _measure_server, f"http://127.0.0.1:{port}"
        )
    finally:
        _stop(ingest)
    port = free_port()
    bare = _start_bare(port)
    try:
        await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{port}/docs", bare)
        bare_batch, bare_track = await asyncio.to_thread(
            _measure_server, f"http://127.0.0.1:{port}"
        )
    finally:
        _stop(bare)
    return [
        at_least(SECTION, f"ingest /v1/batch ({BATCH_SIZE}/request), 1 worker", batch_rate,
                 "events/s", BATCH_GOAL),
        Figure(SECTION, f"bare FastAPI endpoint, same {BATCH_SIZE}-event bodies", bare_batch,
               "events/s"),
        Figure(SECTION, "ingest /v1/track, 1 worker", track_rate, "req/s"),
        Figure(SECTION, "bare FastAPI endpoint, same track bodies", bare_track, "req/s"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description="load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    args = parser.parse_args()
    result = asyncio.run(
        _load(args.url, args.body.read_bytes(), seconds=args.seconds, connections=args.connections)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
