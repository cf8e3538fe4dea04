"""ingest throughput: events/s through `/v1/batch` (batches of 100) and requests/s through
`/v1/track`, one uvicorn worker (`python -m services.ingest`, uvloop + httptools) producing to
the real broker with acks=all. Beside it, in the same run and measured the same way, a bare
FastAPI endpoint that reads the body and answers `{"success": true}`: the HTTP ceiling of this
machine, so the cost of ingest's own work reads as the difference.

The load comes from `wrk` (C, one thread, keep-alive connections): a Python load generator
needs more CPU than the server it measures on two cores (httpx managed 200 requests/s here,
whatever the server), so it measured itself. `wrk` is Debian's package; where it is missing
and apt can install it (as root, e.g. CI), the bench installs it, otherwise it falls back to
several processes of Python's `http.client`, and says so in the figures' names (those figures
are bounded by the generator, not the server). The load average at start and end is reported:
figures taken while other work shares the two cores are lower.

Goal (issue 3): at least 20,000 events/s through batch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.figures import Figure, at_least, median
from bench.infra import BenchInfra
from devstack.broker import free_port
from services.ingest.config import WriteKey

SECTION = "ingest"
REPO = Path(__file__).resolve().parents[1]
WRITE_KEY = "bench-key"
BATCH_SIZE = 100
SECONDS = 8.0
CONNECTIONS = 16  # wrk's keep-alive connections
PYTHON_PROCESSES = 4  # the fallback generator's processes (one connection each)
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


def _start_ingest(
    infra: BenchInfra, prefix: str, port: int, health_port: int
) -> subprocess.Popen[bytes]:
    # A server's key: the bench posts from one address, so no limit per address.
    key = WriteKey.of(WRITE_KEY, source="bench", scopes=["track"], limit_per_address=False)
    env = {
        **os.environ,
        "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "LEADFLOW_KAFKA_TOPIC_PREFIX": prefix,
        "LEADFLOW_INGEST_WRITE_KEYS": json.dumps({"bench": key.model_dump()}),
        "LEADFLOW_INGEST_PORT": str(port),
        "LEADFLOW_INGEST_HEALTH_PORT": str(health_port),
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


# ---- the load -------------------------------------------------------------------------------

WRK_SCRIPT = """
local file = assert(io.open(os.getenv("LEADFLOW_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("LEADFLOW_BENCH_AUTHORIZATION")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "seconds": %f, "failed": %d, "p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _authorization() -> str:
    return "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def load_generator() -> str:
    """`wrk` when it is installed or apt can install it (as root), else `python`."""
    if shutil.which("wrk"):
        return "wrk"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("[bench] installing wrk (Debian package) ...", flush=True)
        if not _apt("install", "-y", "-q", "--no-install-recommends", "wrk"):
            _apt("update", "-q")  # a fresh machine has no package lists yet
            _apt("install", "-y", "-q", "--no-install-recommends", "wrk")
        if shutil.which("wrk"):
            return "wrk"
    print("[bench] wrk not available: Python load generator (figures bounded by it)", flush=True)
    return "python"


def _apt(*arguments: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", *arguments], env=env, capture_output=True, timeout=300, check=False
    )
    return done.returncode == 0


def _measure_with_wrk(url: str, body_file: Path) -> dict[str, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    env = {
        **os.environ,
        "LEADFLOW_BENCH_BODY": str(body_file),
        "LEADFLOW_BENCH_AUTHORIZATION": _authorization(),
    }
    command = [
        "wrk", "--threads", "1", "--connections", str(CONNECTIONS), "--duration", f"{SECONDS:g}s",
        "--timeout", "10s", "--script", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ok = result["requests"] - result["failed"]
    return {"requests_per_s": ok / result["seconds"], "failed": result["failed"]}


def _measure_with_python(url: str, body_file: Path) -> dict[str, float]:
    """`PYTHON_PROCESSES` processes, one keep-alive connection each (see `main`)."""
    command = [
        sys.executable, "-m", "bench.ingest", "--url", url, "--body", str(body_file),
        "--seconds", str(SECONDS),
    ]  # fmt: skip
    processes = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(PYTHON_PROCESSES)
    ]
    results = [json.loads(process.communicate(timeout=120)[0]) for process in processes]
    return {
        "requests_per_s": sum(result["requests_per_s"] for result in results),
        "failed": sum(result["failed"] for result in results),
    }


def _measure(url: str, body: bytes, *, generator: str) -> dict[str, float]:
    """One run of the load against `url`, from other processes than the server's."""
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as directory:
        body_file = Path(directory) / "body.json"
        body_file.write_bytes(body)
        _post(url, body)  # warm up: the first request pays for imports and connections
        if generator == "wrk":
            return _measure_with_wrk(url, body_file)
        return _measure_with_python(url, body_file)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": _authorization(), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(answer.status)


def _measure_server(base: str, *, generator: str) -> tuple[float, float]:
    """Median events/s through batch and requests/s through track, over `RUNS` runs."""
    batch = [_measure(f"{base}/v1/batch", batch_body(), generator=generator) for _ in range(RUNS)]
    track = [_measure(f"{base}/v1/track", track_body(), generator=generator) for _ in range(RUNS)]
    if any(run["failed"] for run in batch + track):
        raise RuntimeError(f"requests failed during the bench: {batch} {track}")
    return (
        median([run["requests_per_s"] * BATCH_SIZE for run in batch]),
        median([run["requests_per_s"] for run in track]),
    )


async def run(infra: BenchInfra) -> list[Figure]:
    generator = await asyncio.to_thread(load_generator)
    load_before = os.getloadavg()[0]
    prefix = await infra.fresh_topic_prefix()
    port, health_port = free_port(), free_port()
    ingest = _start_ingest(infra, prefix, port, health_port)
    try:
        await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{health_port}/readyz", ingest)
        batch_rate, track_rate = await asyncio.to_thread(
            _measure_server, f"http://127.0.0.1:{port}", generator=generator
        )
    finally:
        _stop(ingest)
    port = free_port()
    bare = _start_bare(port)
    try:
        await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{port}/docs", bare)
        bare_batch, bare_track = await asyncio.to_thread(
            _measure_server, f"http://127.0.0.1:{port}", generator=generator
        )
    finally:
        _stop(bare)
    load = f"load: {generator}, {CONNECTIONS if generator == 'wrk' else PYTHON_PROCESSES} conn."
    return [
        at_least(SECTION, f"ingest /v1/batch ({BATCH_SIZE}/request), 1 worker ({load})",
                 batch_rate, "events/s", BATCH_GOAL),
        Figure(SECTION, f"bare FastAPI endpoint, same {BATCH_SIZE}-event bodies", bare_batch,
               "events/s"),
        Figure(SECTION, f"ingest /v1/track, 1 worker ({load})", track_rate, "req/s"),
        Figure(SECTION, "bare FastAPI endpoint, same track bodies", bare_track, "req/s"),
        Figure(SECTION, "machine load average (1 min) before ingest", load_before, "runnable"),
        Figure(SECTION, "machine load average (1 min) after", os.getloadavg()[0], "runnable"),
    ]  # fmt: skip


def main() -> None:
    """The fallback load generator, one process: one keep-alive connection (`http.client`,
    body and headers in one segment) posting the same body until the time is up."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description="load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args()
    target = urllib.parse.urlsplit(args.url)
    body = args.body.read_bytes()
    headers = {"Authorization": _authorization(), "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port)
    ok = failed = 0
    started = time.perf_counter()
    deadline = started + args.seconds
    while time.perf_counter() < deadline:
        connection.request("POST", target.path, body, headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status == 200:
            ok += 1
        else:
            failed += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests_per_s": ok / elapsed, "failed": failed}))


if __name__ == "__main__":
    main()
