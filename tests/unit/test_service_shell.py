"""The service shell's pure parts: every service's command line, settings errors as one line
per variable, companions' rounds, operator output."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.enrich.__main__ import SERVICE as ENRICH
from services.enrich.config import EnrichSettings
from services.ingest.__main__ import SERVICE as INGEST
from services.router.__main__ import SERVICE as ROUTER
from services.router.history_view import render_history
from services.score.__main__ import SERVICE as SCORE
from services.sync.__main__ import SERVICE as SYNC
from shared.companions import Companion, run_companion
from shared.operator import table
from shared.service import Service
from shared.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("service", "commands"),
    [
        (INGEST, {"run"}),
        (ENRICH, {"run", "migrate", "load-accounts", "load-suppressions", "merges", "unmerge"}),
        (SCORE, {"run", "migrate", "explain", "simulate"}),
        (ROUTER, {"run", "migrate", "history", "check"}),
    ],
)
def test_help_lists_every_command_of_the_service_with_its_help(
    service: Service[Any], commands: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        service.main(["--help"])
    assert exited.value.code == 0
    listed = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    helps = {c.name: c.help for c in service.commands} | {
        "run": "serve until SIGTERM/SIGINT",
        "migrate": "bring the",
    }
    assert {name for name in helps if name in commands} == commands
    for name in commands:
        # the command's name, then its help
        opening = " ".join(helps[name].split()[:4])
        assert f"{name} {opening}" in listed, f"{name} is not listed with its help:\n{listed}"


def test_a_bare_invocation_prints_the_commands_and_starts_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert SCORE.main([]) == 2
    assert "explain" in capsys.readouterr().err


def test_a_missing_setting_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no local stack settings file here
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    assert SCORE.main(["explain", "someone@example.com"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: setting 'url' is not set: set the environment variable LEADFLOW_DATABASE_URL"
        " (or start the local stack, `make up`, which writes .devstack/leadflow.env)"
    ]


def test_an_invalid_setting_names_its_variable_and_the_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql+asyncpg://x@localhost/db")
    monkeypatch.setenv("LEADFLOW_ENRICH_REENRICH_BATCH", "0")
    monkeypatch.setenv("LEADFLOW_ENRICH_PRIVACY_KEY", "k" * 32)
    monkeypatch.setenv("LEADFLOW_KAFKA_REQUEST_TIMEOUT_MS", "ten")
    with pytest.raises(SettingsError) as error:
        load_settings(EnrichSettings)
    # the nested kafka settings fail first (they are built as the service's settings default)
    assert "LEADFLOW_KAFKA_REQUEST_TIMEOUT_MS" in str(error.value)
    monkeypatch.delenv("LEADFLOW_KAFKA_REQUEST_TIMEOUT_MS")
    with pytest.raises(SettingsError) as error:
        load_settings(EnrichSettings)
    (line,) = str(error.value).splitlines()
    assert "LEADFLOW_ENRICH_REENRICH_BATCH" in line
    assert "greater than or equal to 1" in line


def test_the_local_stack_file_fills_in_what_the_environment_does_not_set(tmp_path: Path) -> None:
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "leadflow.env").write_text(
        "LEADFLOW_DATABASE_URL='postgresql+asyncpg://stack@127.0.0.1:5433/leadflow'\n"
        "LEADFLOW_ENRICH_REENRICH_BATCH='7'\n"
        "LEADFLOW_ENRICH_PRIVACY_KEY='a-local-stack-privacy-key-of-32-bytes'\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    # the environment wins over the file
    environment |= {"LEADFLOW_ENRICH_REENRICH_BATCH": "9", "PYTHONPATH": str(REPO)}
    read = subprocess.run(
        [sys.executable, "-c", "from shared.settings import load_settings\n"
         "from services.enrich.config import EnrichSettings\n"
         "settings = load_settings(EnrichSettings)\n"
         "print(settings.database.url.get_secret_value(), settings.reenrich_batch)"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert read.stdout.split() == ["postgresql+asyncpg://stack@127.0.0.1:5433/leadflow", "9"]


async def test_a_companion_runs_again_after_the_wait_its_round_asks_for() -> None:
    started = asyncio.get_running_loop().time()
    rounds: list[float] = []
    waits = iter([0.05, 0.2, 10.0])

    async def round_() -> float:
        rounds.append(asyncio.get_running_loop().time() - started)
        if len(rounds) == 2:
            raise RuntimeError("a failing round is retried after retry_after_s")
        return next(waits)

    task = asyncio.create_task(run_companion(Companion("test", round_, retry_after_s=0.1)))
    await asyncio.sleep(0.4)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # at once; 0.05 s later (asked); 0.1 s after the failure (retry_after_s); 0.2 s later
    # (asked); then 10 s later, after the test
    assert len(rounds) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(rounds)]
    assert gaps == [pytest.approx(0.05, abs=0.03), pytest.approx(0.1, abs=0.03),
                    pytest.approx(0.2, abs=0.03)]  # fmt: skip


def test_a_table_aligns_columns_under_their_headers() -> None:
    assert table(["merge", "state"], [["m-1", "active"], ["merge-22", None]]).splitlines() == [
        "merge     state",
        "--------  ------",
        "m-1       active",
        "merge-22  -",
    ]


def test_a_routing_history_names_the_lead_and_lists_decisions_for_people() -> None:
    history = {
        "lead_id": "lead-1",
        "decisions": [
            {
                "decision_id": "d-1",
                "route": "nurture",
                "track": "executive-briefings",
                "stage": "lead",
                "email": "vp@globex.com",
                "name": "Vera Price",
                "company": "Globex",
                "score": {"priority": "B2", "total": 40},
                "decided_at": "2026-12-02T15:23:07.778000+00:00",
                "speed_to_lead_ms": 80,
                "closed_at": "2026-12-02T15:23:07.783000+00:00",
                "closed_reason": "lead changed stage",
            },
            {
                "decision_id": "d-2",
                "route": "sdr",
                "owner": {"name": "Grace Hopper", "team": "sdr-emea"},
                "stage": "mql",
                "email": "vp@globex.com",
                "score": {"priority": "A1", "total": 110},
                "decided_at": "2026-12-02T15:23:07.783000+00:00",
                "speed_to_lead_ms": 85,
                "closed_at": None,
            },
        ],
        "suppressions": [],
        "sla_breaches": [],
    }
    text = render_history(history)
    lines = text.splitlines()
    assert lines[0] == "lead lead-1 <vp@globex.com>, Vera Price, Globex"
    assert "decisions (2)" in lines
    nurture = next(line for line in lines if "executive-briefings" in line)
    assert "2026-12-02 15:23:07" in nurture
    assert "lead changed stage" in nurture
    sdr = next(line for line in lines if "Grace Hopper (sdr-emea)" in line)
    assert "A1 110" in sdr
    assert "85 ms" in sdr
    assert "suppressions (0)" in lines
    assert "SLA breaches (0)" in lines


def test_a_bad_routing_file_is_named_in_one_line_by_check_and_by_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("version: 1\nteams: not-a-list\n")
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert ROUTER.main(["check", str(bad)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {bad}")
    # the service refuses to start with it, the same way, before connecting to anything
    monkeypatch.setenv("LEADFLOW_ROUTER_ROUTING_FILE", str(bad))
    assert ROUTER.main(["run"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {bad}")


@pytest.mark.parametrize(
    ("service", "variable", "content"),
    [
        (SCORE, "LEADFLOW_SCORE_RULES_FILE", "version: 1\nrules: not-a-list\n"),
        (SYNC, "LEADFLOW_SYNC_DESTINATIONS_FILE", "destinations:\n  - url: ftp://crm.example\n"),
    ],
)
def test_a_bad_configuration_file_stops_the_start_before_anything_connects(
    service: Service[Any],
    variable: str,
    content: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No database answers at this address: the file is named at once, not after the wait for
    the database and its schema (`Service.check_files`)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv(variable, str(bad))
    assert service.main(["run"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert str(bad) in errors[0]
    assert "does not answer" not in err  # the shell never waited for the database
