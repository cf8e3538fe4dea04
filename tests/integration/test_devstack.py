"""The local stack as a new user meets it (`make run`, `make up`, `make down`): whole stacks of
real processes (broker, PostgreSQL, the four services, the supervisor and its watchdog), each in
a temporary state directory on free ports, driven through `python -m devstack` as the Makefile
drives it. A stack takes a while to start, so the cases are few and each tells a whole story."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from dotenv import dotenv_values

from devstack.broker import port_open
from devstack.processes import SERVICES, StackAddresses
from devstack.state import SUPERVISOR, WATCHDOG, StartedProcess
from services.router.routing_config import load_routing
from shared.topics import ROUTING_NURTURE, ROUTING_SDR
from tests.fixtures.devstack import LocalStack, without_leadflow_settings

EVERY_PROCESS = {SUPERVISOR, WATCHDOG, "broker", "postgres", *SERVICES}


class Output:
    """The lines a process prints on a pipe, read as they come, with a deadline."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.lines: list[str] = []
        self._partial = b""

    def wait_for(self, text: str, *, timeout_s: float, logs: Callable[[], str]) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            if found := next((line for line in self.lines if text in line), None):
                return found
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.stream], [], [], max(remaining, 0))
            chunk = os.read(self.stream.fileno(), 65536) if readable else b""
            if not chunk:
                printed = "\n".join(self.lines[-30:])
                raise AssertionError(f"{text!r} not printed; printed:\n{printed}{logs()}")
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines += [line.decode(errors="replace") for line in complete]

    def close(self) -> None:
        self.stream.close()


def decided(stack: LocalStack, email: str, *, timeout_s: float = 60) -> None:
    """Wait until a routing decision about `email` is on the stack's topics (read with an
    independent client, not the stack's display)."""
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{stack.ports['kafka']}",
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    topics = (ROUTING_SDR.full_name(""), ROUTING_NURTURE.full_name(""))
    metadata = consumer.list_topics(timeout=10).topics
    consumer.assign(
        [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions]
    )
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            value = message.value() if message is not None and not message.error() else None
            if value is not None and email.encode() in value:
                return
    finally:
        consumer.close()
    raise AssertionError(f"no decision about {email} in {timeout_s}s{stack.logs()}")


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.1)


def kill(process: StartedProcess) -> None:
    os.kill(process.pid, signal.SIGKILL)
    wait_until(lambda: not process.running(), timeout_s=10, what=f"{process.describe()} killed")


@pytest.mark.slow  # about 30 s: `make test-slow` (make test stays within 20 minutes)
@pytest.mark.timeout(600)
def test_ctrl_c_after_the_reader_of_its_output_went_away_stops_every_process(
    local_stack: LocalStack,
) -> None:
    run = local_stack.start_run("--no-demo")
    output = Output(run)
    output.wait_for("ready.", timeout_s=240, logs=local_stack.logs)
    started = local_stack.state.running()
    assert {process.name for process in started} == EVERY_PROCESS

    # The decision display shows the decisions made right after "ready" (it reads the stack's
    # fresh topics from the beginning; it used to join at the latest offset and miss them).
    email = f"vera.kim.{uuid.uuid4().hex[:6]}@initech.com"
    local_stack.post_demo_request(email)
    line = output.wait_for(email, timeout_s=60, logs=local_stack.logs)
    assert "NURTURE" in line or "SDR" in line
    # ... and sync delivers it to the stack's webhook destination, which verifies the signature.
    webhook = output.wait_for("[webhook] demo-crm received", timeout_s=60, logs=local_stack.logs)
    assert "decision" in webhook
    assert "signature verified" in webhook

    # An operator command run next to the stack, with no LEADFLOW_* variable set, finds the
    # database in .devstack/leadflow.env of its working directory.
    explain = subprocess.run(
        [sys.executable, "-m", "services.score", "explain", email],
        cwd=local_stack.home,
        env=without_leadflow_settings(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert explain.returncode == 0, explain.stdout + explain.stderr
    assert email in explain.stdout

    # `make run | tee run.log`, then Ctrl+C: the terminal's SIGINT ends tee too, so the next
    # lines go to a pipe nobody reads. The next decision is printed into the broken pipe: the
    # supervisor goes on supervising.
    output.close()
    second = f"sam.patel.{uuid.uuid4().hex[:6]}@initech.com"
    local_stack.post_demo_request(second)
    decided(local_stack, second)
    time.sleep(1.5)  # the display's next poll prints it
    assert run.poll() is None, local_stack.logs()
    assert local_stack.ingest_ready()

    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 0
    assert [process.describe() for process in started if process.running()] == []
    assert local_stack.listening() == []
    assert not local_stack.state.env_file.exists()
    stderr = (local_stack.home / "run.stderr").read_text()
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr


# `make test-slow`: a whole local stack each, about 40 s (make test keeps Ctrl+C's case)
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_second_stack_refuses_to_start_and_leaves_the_running_one_alone(
    local_stack: LocalStack,
) -> None:
    up = local_stack.devstack("up", "--no-demo")
    assert up.returncode == 0, up.stdout + up.stderr + local_stack.logs()
    started = local_stack.state.started()
    assert {process.name for process in started} == EVERY_PROCESS
    settings = local_stack.state.env_file.read_text()

    # `make up`, then `make run` (or `make up` again): refused, the background stack untouched.
    for command in (("run", "--no-demo"), ("up",)):
        second = local_stack.devstack(*command)
        assert "already running" in second.stdout
        assert second.returncode == (1 if command[0] == "run" else 0)
    assert all(process.running() for process in started)
    assert local_stack.state.started() == started
    assert local_stack.state.env_file.read_text() == settings
    assert sorted(local_stack.listening()) == sorted(local_stack.ports.values())
    assert local_stack.ingest_ready()

    down = local_stack.devstack("down")
    assert down.returncode == 0
    assert [process.describe() for process in started if process.running()] == []
    assert local_stack.listening() == []
    assert not local_stack.state.env_file.exists()


# `make test-slow`: a whole local stack each, about 40 s (make test keeps Ctrl+C's case)
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_down_stops_a_stack_whose_supervisor_and_watchdog_were_killed(
    local_stack: LocalStack,
) -> None:
    up = local_stack.devstack("up", "--no-demo")
    assert up.returncode == 0, up.stdout + up.stderr + local_stack.logs()
    started = local_stack.state.started()

    # `kill -9` of both: broker, database and services run on, their ports held.
    by_name = {process.name: process for process in started}
    kill(by_name[WATCHDOG])
    kill(by_name[SUPERVISOR])
    orphans = [process for process in started if process.name not in (SUPERVISOR, WATCHDOG)]
    assert all(process.running() for process in orphans)

    # A new stack does not start beside them, and says what stops them.
    again = local_stack.devstack("run", "--no-demo")
    assert again.returncode == 1
    assert "`make down` stops them" in again.stdout
    assert all(process.running() for process in orphans)
    assert "supervisor gone" in local_stack.devstack("status").stdout

    down = local_stack.devstack("down")
    assert down.returncode == 0
    assert "no stack running" not in down.stdout
    assert "not this stack's" not in down.stdout
    assert [process.describe() for process in orphans if process.running()] == []
    assert local_stack.listening() == []
    assert not local_stack.state.env_file.exists()


# `make test-slow`: a whole local stack each, about 40 s (make test keeps Ctrl+C's case)
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_supervisor_takes_its_stack_with_it(local_stack: LocalStack) -> None:
    up = local_stack.devstack("up")  # with the demo traffic, on the demo's routing file
    assert up.returncode == 0, up.stdout + up.stderr + local_stack.logs()
    routing = load_routing(local_stack.state.path / "routing.yaml")
    assert "+demo-caps-x" in routing.version
    stack_log = local_stack.state.path / "stack.log"
    wait_until(lambda: " -> " in stack_log.read_text(), timeout_s=60, what="demo decisions printed")
    started = local_stack.state.started()

    kill(next(process for process in started if process.name == SUPERVISOR))

    wait_until(
        lambda: not any(process.running() for process in started),
        timeout_s=120,
        what="the watchdog stopped the stack",
    )
    assert local_stack.listening() == []
    assert not local_stack.state.env_file.exists()
    assert "no stack running" in local_stack.devstack("down").stdout


def test_ports_held_by_other_processes_are_named_and_left_alone(local_stack: LocalStack) -> None:
    port = local_stack.ports["kafka"]
    listener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            f"s = socket.create_server(('127.0.0.1', {port}))\n"
            "time.sleep(600)",
        ]
    )
    try:
        wait_until(lambda: port_open(port), timeout_s=10, what="the other process listens")

        run = local_stack.devstack("run", "--no-demo")
        assert run.returncode == 1
        assert f"Kafka {port} by pid {listener.pid}" in run.stdout
        assert not (local_stack.state.path / "postgres").exists()  # nothing was started

        down = local_stack.devstack("down")
        assert down.returncode == 0
        assert f"pid {listener.pid}" in down.stdout
        assert "left alone" in down.stdout
        assert listener.poll() is None
    finally:
        listener.kill()
        listener.wait()


def test_the_env_file_reads_back_as_the_services_environment(tmp_path: Path) -> None:
    addresses = StackAddresses(
        kafka_bootstrap="127.0.0.1:19092",
        database_url="postgresql+asyncpg://leadflow@/leadflow?host=/tmp/pg&port=5433",
        # JSON with the characters a dotenv value must escape or must not expand.
        write_keys={"key 'one'": 'site "A" \\ $HOME', "key-two": "site-b"},
        sample_references=True,
        service_env={"router": {"LEADFLOW_ROUTER_ROUTING_FILE": "/tmp/routing.yaml"}},
    )
    path = tmp_path / "leadflow.env"
    addresses.write_env_file(path)

    expected = {
        name: value
        for service in SERVICES
        for name, value in addresses.environment(service).items()
        if name.startswith("LEADFLOW_")
    }
    assert dotenv_values(path) == expected
    assert json.loads(expected["LEADFLOW_INGEST_WRITE_KEYS"]) == addresses.write_key_entries()
    assert path.stat().st_mode & 0o077 == 0

    addresses.write_keys["k"] = "${HOME}"
    with pytest.raises(ValueError, match="expand"):
        addresses.write_env_file(path)
