"""The README's commands run as written, against a running local stack.

Every `sh` block of the README runs in bash next to a stack started as `make up DEMO=0` starts
it, in the order the README gives them, from a directory laid out as the repository (the
stack's `.devstack` in it). The only change made to a command is the stack's ports: the test's
stack listens on free ports, not on 8000/8081/8082/8083/8092/8093. A block may need a moment for the
pipeline to catch up with the one before (as it would for a person typing it), so it is tried
again for up to a minute. Commands shown inline with placeholders (`<email>`) cannot run as
they are: each one's module and sub-command must exist (`--help` answers), and each `make`
target named must be in the Makefile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack.processes import REPO_ROOT
from tests.fixtures.devstack import LocalStack, without_leadflow_settings

README = REPO_ROOT / "README.md"
NOT_RUN_HERE = {
    # `make run` runs until Ctrl+C and `make test` is this suite: tests/integration/
    # test_devstack.py drives the stack the way `make run` does.
    "make run    # broker, PostgreSQL,",
}
DEFAULT_PORTS = {"ingest": 8000, "enrich": 8081, "score": 8082, "router": 8083,
                 "score_api": 8092, "router_api": 8093}  # fmt: skip


def shell_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_readme_shows_commands_to_run() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 4
    assert any("services.score explain" in block for block in blocks)


def test_every_shell_block_of_the_readme_runs_as_written(local_stack: LocalStack) -> None:
    started = local_stack.devstack("up", "--no-demo")
    assert started.returncode == 0, started.stdout + started.stderr + local_stack.logs()
    home = local_stack.home
    for name in (".venv", "services", "examples"):
        (home / name).symlink_to(REPO_ROOT / name)
    environment = without_leadflow_settings()
    environment["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{environment['PATH']}"
    ran = 0
    for block in shell_blocks():
        if any(block.startswith(skipped) for skipped in NOT_RUN_HERE):
            continue
        script = block
        for service, default in DEFAULT_PORTS.items():
            script = re.sub(rf"(localhost|127\.0\.0\.1):{default}\b",
                            f"127.0.0.1:{local_stack.ports[service]}", script)  # fmt: skip
        result = _run_until_it_succeeds(script, cwd=home, env=environment)
        assert result.returncode == 0, (
            f"README block failed:\n{block}\n--- stdout\n{result.stdout}\n--- stderr\n"
            f"{result.stderr}{local_stack.logs()}"
        )
        assert "Traceback" not in result.stderr, result.stderr
        ran += 1
    assert ran >= 3
    stopped = local_stack.devstack("down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_every_command_named_inline_exists() -> None:
    spans = re.findall(r"`([^`\n]+)`", README.read_text())
    python_commands = [span for span in spans if span.startswith(".venv/bin/python -m ")]
    assert python_commands

    def help_of(span: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        words = span.split()[2:]
        module, rest = words[0], words[1:]
        command = [sys.executable, "-m", module]
        if rest and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            command.append(rest[0])
        return span, subprocess.run(
            [*command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )

    # A process each (most of its time is importing): a few at once, not one after another.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for span, answer in pool.map(help_of, sorted(set(python_commands))):
            assert answer.returncode == 0, f"{span}: {answer.stderr}"
    targets = set(re.findall(r"^([a-z-]+):", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE))
    for span in spans:
        if span.startswith("make "):
            assert span.split()[1] in targets, f"{span}: no such target in the Makefile"


def _run_until_it_succeeds(
    script: str, *, cwd: Path, env: dict[str, str], patience_s: float = 60
) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + patience_s
    while True:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(2)
