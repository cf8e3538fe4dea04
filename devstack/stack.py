"""The local stack: `python -m devstack run|up|down|status` (behind `make run/up/down`).

`run` starts, in the foreground: the broker (Tansu), PostgreSQL (fresh each time: the broker
keeps topics in memory, so stored consumer offsets must start over with it), the topics, the
migrations, the four services and the demo traffic, then prints routing decisions as they are
made. Ctrl+C (or SIGTERM) stops everything in reverse order; no process and no port is left.
`up` runs the same in the background (pid in .devstack/stack.pid); `down` stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

from devstack.broker import LocalBroker, port_open
from devstack.demo import play
from devstack.postgres import LocalPostgres
from devstack.processes import REPO_ROOT, SERVICES, ServiceProcess, StackAddresses
from devstack.watch import print_decisions
from shared.kafka import ensure_topics
from shared.migrations import upgrade_to_head
from shared.settings import KafkaSettings

STATE_DIR = REPO_ROOT / ".devstack"
PID_FILE = STATE_DIR / "stack.pid"
READY_FILE = STATE_DIR / "ready"
KAFKA_PORT = int(os.environ.get("LEADFLOW_DEV_KAFKA_PORT", "9092"))
POSTGRES_PORT = int(os.environ.get("LEADFLOW_DEV_POSTGRES_PORT", "5433"))
WRITE_KEY = os.environ.get("LEADFLOW_DEV_WRITE_KEY", "local-dev-key")
PARTITIONS = 4


def say(message: str) -> None:
    print(f"[leadflow] {message}", flush=True)


class Stack:
    def __init__(self) -> None:
        self.logs = STATE_DIR / "logs"
        self.broker = LocalBroker(port=KAFKA_PORT, log_file=self.logs / "broker.log")
        self.postgres = LocalPostgres(port=POSTGRES_PORT, base_dir=STATE_DIR / "postgres")
        self.addresses = StackAddresses(
            kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
            database_url=self.postgres.url("leadflow"),
            write_keys={WRITE_KEY: "local-dev"},
            sample_references=True,
        )
        self.services: list[ServiceProcess] = []

    def ports(self) -> dict[str, int]:
        return {
            "Kafka": KAFKA_PORT,
            "PostgreSQL": POSTGRES_PORT,
            "ingest": self.addresses.ingest_port,
            **{f"{name} health": port for name, port in self.addresses.health_ports.items()},
        }

    def start(self) -> None:
        busy = [f"{name} ({port})" for name, port in self.ports().items() if port_open(port)]
        if busy:
            raise SystemExit(
                f"ports already in use: {', '.join(busy)}; is a stack running? (`make down`)"
            )
        shutil.rmtree(STATE_DIR / "postgres", ignore_errors=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        say(f"starting Kafka-protocol broker (Tansu) on 127.0.0.1:{KAFKA_PORT}")
        self.broker.start()
        say(f"starting PostgreSQL on 127.0.0.1:{POSTGRES_PORT}")
        self.postgres.start()
        asyncio.run(_create_database(self.postgres))
        asyncio.run(
            ensure_topics(
                KafkaSettings(bootstrap_servers=self.addresses.kafka_bootstrap),
                partitions=PARTITIONS,
            )
        )
        for service in ("enrich", "score", "router"):
            upgrade_to_head(
                migrations_dir=REPO_ROOT / "services" / service / "migrations",
                schema=service,
                database_url=self.addresses.database_url,
            )
        say("topics created, migrations applied; starting ingest, enrich, score, router")
        for service in SERVICES:
            process = ServiceProcess(service, self.addresses, log_file=self.logs / f"{service}.log")
            self.services.append(process.start())
        for process in self.services:
            process.wait_ready(timeout_s=90)

    def stop(self) -> None:
        for process in reversed(self.services):
            process.stop()
        self.broker.stop()
        self.postgres.stop()


async def _create_database(postgres: LocalPostgres) -> None:
    import asyncpg

    connection = await asyncpg.connect(postgres.url("postgres", driver="postgresql"))
    try:
        await connection.execute("CREATE DATABASE leadflow")
    finally:
        await connection.close()


async def show(stack: Stack, *, demo: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ingest = f"http://127.0.0.1:{stack.addresses.ingest_port}"
    tasks = [asyncio.create_task(print_decisions(stack.addresses.kafka_bootstrap, "", stop=stop))]
    if demo:
        tasks.append(asyncio.create_task(play(ingest, WRITE_KEY, rate_per_s=1.0, stop=stop)))
    say(
        f"ready. Tracking API: {ingest}/v1/track and /v1/identify (write key '{WRITE_KEY}'), "
        f"API docs {ingest}/docs"
    )
    say(
        f"service logs in {stack.logs}; "
        + ("demo traffic is on; " if demo else "")
        + "routing decisions follow. Ctrl+C stops."
    )
    READY_FILE.touch()
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)


def run(*, demo: bool) -> int:
    stack = Stack()
    try:
        stack.start()
        asyncio.run(show(stack, demo=demo))
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping services, broker and database")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut the cleanup
        stack.stop()
        READY_FILE.unlink(missing_ok=True)
        PID_FILE.unlink(missing_ok=True)
        say("stopped")
    return 0


def up(*, demo: bool) -> int:
    if PID_FILE.exists() and _alive(int(PID_FILE.read_text())):
        say(f"already running (pid {PID_FILE.read_text().strip()})")
        return 0
    STATE_DIR.mkdir(exist_ok=True)
    READY_FILE.unlink(missing_ok=True)
    log = open(STATE_DIR / "stack.log", "wb")  # noqa: SIM115 - handed to the child
    args = [sys.executable, "-m", "devstack", "run"] + ([] if demo else ["--no-demo"])
    process = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    PID_FILE.write_text(str(process.pid))
    deadline = time.monotonic() + 180
    while not READY_FILE.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            say(f"the stack did not start; see {STATE_DIR / 'stack.log'}:")
            print((STATE_DIR / "stack.log").read_text()[-3000:])
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(60)
            PID_FILE.unlink(missing_ok=True)
            return 1
        time.sleep(0.2)
    say(
        f"running in the background (pid {process.pid}); decisions in {STATE_DIR / 'stack.log'};"
        " `make down` stops it"
    )
    return 0


def down() -> int:
    if not PID_FILE.exists():
        say("not running")
        return 0
    pid = int(PID_FILE.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    say("stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours is not alive; reap it if it is ours.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished == 0


def status() -> int:
    stack = Stack()
    for name, port in stack.ports().items():
        print(f"{name:<15} {port:>5}  {'listening' if port_open(port) else '-'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["run", "up", "down", "status"])
    parser.add_argument("--no-demo", action="store_true", help="no demo traffic")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(demo=not args.no_demo)
    if args.command == "up":
        return up(demo=not args.no_demo)
    if args.command == "down":
        return down()
    return status()
