"""The reliability suite (`make test-reliability`): chaos, scaling, bad input and security
against the real broker, PostgreSQL and service processes. Cases marked `slow` (minutes each)
run only there; the rest also run in `make test`."""

from __future__ import annotations

import pytest

from tests.fixtures.attack import ATTACK_TABLE, AttackTable
from tests.fixtures.outage import outage_pipeline, restartable_postgres

__all__ = ["outage_pipeline", "restartable_postgres"]


@pytest.fixture(scope="session")
def attack_table(pytestconfig: pytest.Config) -> AttackTable:
    """The bad-input attacks of this run (test_bad_input.py), printed as one table at its end."""
    return pytestconfig.stash.setdefault(ATTACK_TABLE, AttackTable())


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    table = config.stash.get(ATTACK_TABLE, None)
    if table is not None and table.rows:
        terminalreporter.section("bad input: what was tried, the answer, health and memory")
        for line in table.render().splitlines():
            terminalreporter.write_line(line)
