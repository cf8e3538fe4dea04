"""The local stack: `python -m devstack run|up|down|status` (behind `make run/up/down/status`).

`run` starts, in the foreground: the broker (Tansu), PostgreSQL (fresh each time: the broker
keeps topics in memory, so stored consumer offsets must start over with it), the topics, the
migrations, the four services and the demo traffic, then prints every routing decision made.
Ctrl+C (SIGTERM, SIGHUP) stops everything in reverse order; no process and no port is left.
`up` runs the same in the background; `down` stops it.

The guarantees, and what keeps each:
1. A stack never stops what it did not start. `run` checks before it starts anything: the state
   directory's lock (another stack runs), the record of a stack whose supervisor is gone, the
   ports. A refused start stops nothing and changes nothing in the state directory.
2. A stack stops its children whatever happens to its output or to itself. Printing survives a
   reader that went away (`make run | tee`, then Ctrl+C: tee dies first): output stops,
   supervising goes on. If the supervisor itself dies (SIGKILL, OOM), its watchdog stops what it
   had started: a small process whose stdin is a pipe only the supervisor holds, so the kernel
   closes it however the supervisor ends. Not PR_SET_PDEATHSIG: PostgreSQL's postmaster is
   started detached by `pg_ctl` (not our child, so no parent-death signal reaches it), the signal
   is cleared when `runuser` changes user (PostgreSQL as root), and it fires when the *thread*
   that forked exits, not the process.
3. `down` stops a stack whose supervisor (and watchdog) are gone: every process the stack
   started is recorded with its start time (devstack.state), so `down` finds the orphans and
   signals nothing that merely reuses their pids. A port held by anything else is named, and
   left alone.

Where: `.devstack/` (`LEADFLOW_DEV_STATE_DIR`) and the ports of `PORTS`
(`LEADFLOW_DEV_KAFKA_PORT`, ...), so that tests run whole stacks in temporary directories.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import LocalBroker, port_open
from devstack.demo import DEMO_JOURNEYS_PER_S, demo_routing, play, routing_yaml
from devstack.demo_crm import act_as_crm
from devstack.demo_webhooks import DEMO_SECRET, SECRET_VARIABLE, destinations_yaml, receive_webhooks
from devstack.postgres import LocalPostgres
from devstack.processes import REPO_ROOT, SERVICES, ServiceProcess, StackAddresses
from devstack.state import (
    SUPERVISOR,
    WATCHDOG,
    StartedProcess,
    StateDir,
    describe_holders,
    port_holders,
    stop_in_reverse,
)
from devstack.watch import print_decisions
from services.router.routing_config import DEFAULT_ROUTING_FILE, load_routing
from shared.kafka import ensure_topics
from shared.migrations import upgrade_to_head
from shared.settings import KafkaSettings

PARTITIONS = 4
PORTS = {  # name: (label, default); LEADFLOW_DEV_<NAME>_PORT moves one
    "kafka": ("Kafka", 9092),
    "postgres": ("PostgreSQL", 5433),
    "ingest": ("ingest", 8000),
    "ingest_health": ("ingest health", 8080),
    "enrich": ("enrich health", 8081),
    "score": ("score health", 8082),
    "router": ("router health", 8083),
    "enrich_api": ("enrich API", 8091),
    "score_api": ("score API", 8092),
    "router_api": ("router API", 8093),
    "console": ("console", 8088),
    "console_health": ("console health", 8084),
    "sync": ("sync health", 8085),
    "webhooks": ("demo webhook destination", 8089),
}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Layout:
    """Where a local stack lives: its state directory and its ports."""

    state_dir: Path
    ports: dict[str, int]  # by the names of PORTS
    write_key: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Layout:
        return cls(
            state_dir=Path(
                environ.get("LEADFLOW_DEV_STATE_DIR", REPO_ROOT / ".devstack")
            ).resolve(),
            ports={
                name: int(environ.get(f"LEADFLOW_DEV_{name.upper()}_PORT", default))
                for name, (_, default) in PORTS.items()
            },
            write_key=environ.get("LEADFLOW_DEV_WRITE_KEY", "local-dev-key"),
        )

    def labelled_ports(self) -> list[tuple[str, int]]:
        return [(PORTS[name][0], port) for name, port in self.ports.items()]


def say(message: str) -> None:
    show(f"[leadflow] {message}")


def show(line: str) -> None:
    """Print a line for whoever reads the stack's output. A reader that went away (`make run |
    tee` and Ctrl+C, which kills tee too; a closed terminal) must not stop the supervisor: the
    first write that fails points stdout at /dev/null, and printing stops while supervising (and
    stopping the stack) goes on."""
    try:
        print(line, flush=True)
    except (OSError, ValueError):  # EPIPE, EIO; ValueError: stdout closed
        _silence_stdout()


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        out = sys.stdout.fileno()
    except (OSError, ValueError):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        os.close(devnull)
        return
    # Also stderr when it is the same pipe (`make run 2>&1 | tee`): the interpreter's last
    # flushes and warnings go there.
    with contextlib.suppress(OSError):
        if os.path.sameopenfile(out, 2):
            os.dup2(devnull, 2)
    os.dup2(devnull, out)
    os.close(devnull)


class Stack:
    """The processes of one local stack. Each is recorded in the state directory as soon as it
    runs, so that the watchdog and `down` can stop it if this process cannot."""

    def __init__(self, layout: Layout, state: StateDir, *, demo: bool) -> None:
        self.layout = layout
        self.state = state
        self.demo = demo
        ports = layout.ports
        self.broker = LocalBroker(port=ports["kafka"], log_file=state.logs / "broker.log")
        self.postgres = LocalPostgres(port=ports["postgres"], base_dir=state.path / "postgres")
        self.routing_file = state.path / "routing.yaml" if demo else DEFAULT_ROUTING_FILE
        # sync delivers to the stack's own webhook destination (`demo_webhooks`), demo or not
        self.destinations_file = state.path / "destinations.yaml"
        self.addresses = StackAddresses(
            kafka_bootstrap=f"127.0.0.1:{ports['kafka']}",
            database_url=self.postgres.url("leadflow"),
            write_keys={layout.write_key: "local-dev"},
            ingest_port=ports["ingest"],
            health_ports={
                "ingest": ports["ingest_health"],
                **{name: ports[name] for name in ("enrich", "score", "router")},
                "console": ports["console_health"],
                "sync": ports["sync"],
            },
            console_port=ports["console"],
            api_ports={name: ports[f"{name}_api"] for name in ("enrich", "score", "router")},
            sample_references=True,
            # The development broker holds every group join for the session timeout: the
            # consumers start taking events 2 s after they start instead of 10.
            fast_rebalance=True,
            # Always named, demo or not: the services must not take it from another stack's
            # leadflow.env (shared.settings reads .devstack/leadflow.env of the working directory).
            service_env={
                "router": {"LEADFLOW_ROUTER_ROUTING_FILE": str(self.routing_file)},
                "sync": {
                    "LEADFLOW_SYNC_DESTINATIONS_FILE": str(self.destinations_file),
                    SECRET_VARIABLE: DEMO_SECRET,
                },
            },
        )
        self.services: list[ServiceProcess] = []
        self.console_password = ""
        self._watchdog: subprocess.Popen[bytes] | None = None

    def start(self, *, lock: int) -> None:
        """Start everything and wait until every service answers. `lock` is the state
        directory's lock, shared with the watchdog."""
        self._start_watchdog(lock)
        shutil.rmtree(self.state.path / "postgres", ignore_errors=True)
        if self.demo:
            demo = demo_routing(
                load_routing(DEFAULT_ROUTING_FILE), leads_per_hour=DEMO_JOURNEYS_PER_S * 3600
            )
            self.routing_file.write_text(routing_yaml(demo))
        self.destinations_file.write_text(destinations_yaml(self.layout.ports["webhooks"]))
        ports = self.layout.ports
        say(f"starting Kafka-protocol broker (Tansu) on 127.0.0.1:{ports['kafka']}")
        self.broker.start()
        self._record("broker", self.broker.pid)
        say(f"starting PostgreSQL on 127.0.0.1:{ports['postgres']}")
        self.postgres.start()
        self._record("postgres", self.postgres.pid, stop_signal="SIGINT")
        asyncio.run(_create_database(self.postgres))
        asyncio.run(
            ensure_topics(
                KafkaSettings(bootstrap_servers=self.addresses.kafka_bootstrap),
                partitions=PARTITIONS,
            )
        )
        for service in ("enrich", "score", "router", "console", "sync"):
            upgrade_to_head(
                migrations_dir=REPO_ROOT / "services" / service / "migrations",
                schema=service,
                database_url=self.addresses.database_url,
            )
        self.addresses.write_env_file(self.state.env_file)
        self.state.write_api_token(self.addresses.api_token)
        self.console_password = self._console_admin()
        say(f"topics created, migrations applied; starting {', '.join(SERVICES)}")
        for service in SERVICES:
            log_file = self.state.logs / f"{service}.log"
            process = ServiceProcess(service, self.addresses, log_file=log_file).start()
            self.services.append(process)
            assert process.process is not None
            self._record(service, process.process.pid)
        for process in self.services:
            process.wait_ready(timeout_s=90)

    def _console_admin(self) -> str:
        """The console's first account, `admin`, in the new database; its password (printed
        once by the stack, kept nowhere)."""
        made = ServiceProcess("console", self.addresses, log_file=None).run_to_end(
            "add-person", "admin", "--role", "admin", "--json"
        )
        password: str = json.loads(made)["password"]
        return password

    def _start_watchdog(self, lock: int) -> None:
        log = open(self.state.logs / "watchdog.log", "ab")  # noqa: SIM115 - handed to the child
        with log:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", "devstack", "watchdog"],
                cwd=REPO_ROOT,
                env={**os.environ, "LEADFLOW_DEV_STATE_DIR": str(self.state.path)},
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The lock is held until both have ended: no other stack starts here while the
                # watchdog is still stopping this one.
                pass_fds=(lock,),
                start_new_session=True,  # a terminal's Ctrl+C is for the supervisor
            )
        self._record(WATCHDOG, self._watchdog.pid)

    def _record(self, name: str, pid: int | None, *, stop_signal: str = "SIGTERM") -> None:
        assert pid is not None
        self.state.record(StartedProcess.of(name, pid, stop_signal=stop_signal))

    def stop(self) -> None:
        for process in reversed(self.services):
            process.stop()
        self.broker.stop()
        self.postgres.stop()

    def dismiss_watchdog(self) -> None:
        """Once everything is stopped and the record cleared: the watchdog finds nothing left."""
        if self._watchdog is not None and self._watchdog.stdin is not None:
            self._watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=10)


async def _create_database(postgres: LocalPostgres) -> None:
    import asyncpg

    connection = await asyncpg.connect(postgres.url("postgres", driver="postgresql"))
    try:
        await connection.execute("CREATE DATABASE leadflow")
    finally:
        await connection.close()


async def _show_decisions(stack: Stack) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    ingest = f"http://127.0.0.1:{stack.addresses.ingest_port}"
    bootstrap = stack.addresses.kafka_bootstrap
    tasks = [
        asyncio.create_task(print_decisions(bootstrap, "", stop=stop, show=show)),
        asyncio.create_task(receive_webhooks(stack.layout.ports["webhooks"], stop=stop, show=show)),
    ]
    write_key = stack.layout.write_key
    if stack.demo:
        tasks.append(
            asyncio.create_task(play(ingest, write_key, rate_per_s=DEMO_JOURNEYS_PER_S, stop=stop))
        )
        tasks.append(asyncio.create_task(act_as_crm(bootstrap, stop=stop)))
    say(
        f"ready. Tracking API: {ingest}/v1/track and /v1/identify (write key '{write_key}'), "
        f"API docs {ingest}/docs"
    )
    say(
        f"console: http://127.0.0.1:{stack.addresses.console_port} (sign in as admin with "
        f"the password {stack.console_password}; shown once, `python -m services.console "
        "reset-password admin` gives a new one)"
    )
    say(
        f"service logs in {stack.state.logs}; the services' settings in {stack.state.env_file} "
        f"(operator commands run in {stack.state.path.parent} read them); "
        + ("demo traffic is on; " if stack.demo else "")
        + "routing decisions follow. Ctrl+C stops."
    )
    stack.state.ready_file.write_text(str(os.getpid()))
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)


def run(layout: Layout, *, demo: bool) -> int:
    state = StateDir(layout.state_dir)
    state.create()
    with state.lock() as lock:
        if lock is None:
            say(f"{_already_running(state)}; this one does not start")
            return 1
        if refusal := _refusal(layout, state):
            say(refusal)
            return 1
        return _supervise(layout, state, lock=lock, demo=demo)


def _already_running(state: StateDir) -> str:
    supervisor = state.supervisor()
    pid = f" (pid {supervisor.pid})" if supervisor else ""
    return f"a stack is already running in {state.path}{pid}; `make down` stops it"


def _refusal(layout: Layout, state: StateDir) -> str | None:
    """Why no stack may start here, the lock aside; None when one may. Only looks."""
    if left := state.running():
        listed = ", ".join(process.describe() for process in left)
        return f"a stack whose supervisor is gone left {listed} running; `make down` stops them"
    busy = [
        f"{label} {port} by {describe_holders(port)}"
        for label, port in layout.labelled_ports()
        if port_open(port)
    ]
    if busy:
        return (
            f"ports held by processes this stack did not start: {'; '.join(busy)}. Stop them, "
            "or move the stack (LEADFLOW_DEV_KAFKA_PORT, ..._POSTGRES_, _INGEST_, _ENRICH_, "
            "_SCORE_, _ROUTER_, _CONSOLE_, _SYNC_, _WEBHOOKS_PORT)"
        )
    return None


def _supervise(layout: Layout, state: StateDir, *, lock: int, demo: bool) -> int:
    # SIGTERM (`make down`) and SIGHUP (a closed terminal) stop the stack as Ctrl+C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    state.clear()  # a stopped stack's leftovers: `_refusal` found nothing of it running
    state.record(StartedProcess.of(SUPERVISOR, os.getpid()))
    stack = Stack(layout, state, demo=demo)
    code = 0
    try:
        stack.start(lock=lock)
        asyncio.run(_show_decisions(stack))
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as exc:  # a service that did not start, with its log
        say(f"the stack did not start: {exc}")
        code = 1
    finally:
        for sig in STOP_SIGNALS:  # a second Ctrl+C must not cut the cleanup
            signal.signal(sig, signal.SIG_IGN)
        say("stopping services, broker and database")
        stack.stop()
        state.clear()
        stack.dismiss_watchdog()
        say("stopped")
    return code


def watchdog(state: StateDir) -> int:
    """Wait for the supervisor to end, then stop whatever it left running (nothing, when it
    stopped the stack itself). Its stdin is a pipe only the supervisor holds: the read returns
    at end of file, however the supervisor ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()
    left = [p for p in state.running() if p.name not in (SUPERVISOR, WATCHDOG)]
    if left:
        print(f"the supervisor is gone; stopping {', '.join(p.describe() for p in left)}")
        stop_in_reverse(left)
        state.clear()
    return 0


def up(layout: Layout, *, demo: bool) -> int:
    state = StateDir(layout.state_dir)
    state.create()
    with state.lock() as lock:
        if lock is None:
            say(_already_running(state))
            return 0
        if refusal := _refusal(layout, state):
            say(refusal)
            return 1
    log_path = state.path / "stack.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run", *([] if demo else ["--no-demo"])],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while not _ready(state, process.pid):
        if process.poll() is not None or time.monotonic() > deadline:
            say(f"the stack did not start; see {log_path}:")
            show(log_path.read_text(errors="replace")[-3000:])
            if process.poll() is None:
                process.terminate()  # it stops what it started
                process.wait(120)
            return 1
        time.sleep(0.2)
    say(
        f"running in the background (pid {process.pid}); decisions in {log_path}; "
        "`make down` stops it"
    )
    return 0


def _ready(state: StateDir, pid: int) -> bool:
    try:
        return state.ready_file.read_text() == str(pid)
    except FileNotFoundError:
        return False


def down(layout: Layout) -> int:
    """Stop the stack of the state directory, whatever became of its supervisor: the supervisor
    first (it stops its services, then the broker and the database), then whatever is still
    running of what the stack recorded. Ports held by anything else are named, not touched."""
    state = StateDir(layout.state_dir)
    started = state.running()
    supervisor = next((p for p in started if p.name == SUPERVISOR), None)
    if supervisor is not None:
        say(f"stopping the stack (pid {supervisor.pid})")
        supervisor.stop(timeout_s=90)
    if left := [p for p in state.running() if p.name != SUPERVISOR]:
        say(f"the supervisor is gone; stopping {', '.join(p.describe() for p in left)}")
        stop_in_reverse(left)
    with state.lock() as lock:
        if lock is not None:
            state.clear()
    say("stopped" if started else f"no stack running in {state.path}")
    for label, port in layout.labelled_ports():
        if port_open(port):
            holders = describe_holders(port)
            say(f"{label} port {port} is held by {holders}: not this stack's, left alone")
    return 0


def status(layout: Layout) -> int:
    state = StateDir(layout.state_dir)
    running = state.running()
    supervisor = next((p for p in running if p.name == SUPERVISOR), None)
    if supervisor is not None:
        show(f"stack: running (pid {supervisor.pid}), state in {state.path}")
    elif running:
        listed = ", ".join(process.describe() for process in running)
        show(f"stack: supervisor gone, {listed} still running; `make down` stops them")
    else:
        show(f"stack: not running (state in {state.path})")
    ours = {process.pid: process.name for process in running}
    for label, port in layout.labelled_ports():
        holders = port_holders(port) if port_open(port) else []
        if not port_open(port):
            where = "-"
        elif holders and all(pid in ours for pid in holders):
            where = f"listening ({', '.join(ours[pid] for pid in holders)})"
        else:
            where = f"listening, held by {describe_holders(port)}: not this stack's"
        show(f"{label:<15} {port:>5}  {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument(
        "command",
        choices=["run", "up", "down", "status", "watchdog"],
        help="watchdog: started by `run`, not by hand",
    )
    parser.add_argument("--no-demo", action="store_true", help="no demo traffic")
    args = parser.parse_args(argv)
    layout = Layout.from_environment(os.environ)
    if args.command == "run":
        return run(layout, demo=not args.no_demo)
    if args.command == "up":
        return up(layout, demo=not args.no_demo)
    if args.command == "down":
        return down(layout)
    if args.command == "watchdog":
        return watchdog(StateDir(layout.state_dir))
    return status(layout)
