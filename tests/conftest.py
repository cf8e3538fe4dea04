"""Test tiers by folder: tests/unit (pure, no I/O) and tests/integration (real broker and
PostgreSQL, started once per session; a fresh database and topic prefix per test)."""

from __future__ import annotations

import os

import pytest

# A local stack running beside the tests (`make up`) leaves its settings in
# .devstack/leadflow.env for operator commands; the services and settings the tests build must
# not read them (shared.settings.ENV_FILE). Set before anything imports shared.settings, and
# inherited by the service processes the tests start.
os.environ["LEADFLOW_ENV_FILE"] = os.devnull
# No scheduled model training in the services the tests start (each start would spawn one):
# tests of training start it themselves (tests/integration/test_learning.py).
os.environ["LEADFLOW_SCORE_RETRAIN_INTERVAL_H"] = "0"

pytest_plugins = [
    "tests.fixtures.infra",
    "tests.fixtures.pipeline",
    "tests.fixtures.devstack",
    "tests.fixtures.enrich",
    "tests.fixtures.ingest",
    "tests.fixtures.browser",
    "tests.fixtures.webhooks",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/tests/unit/" in path:
            item.add_marker(pytest.mark.unit)
        elif "/tests/deploy/" in path:
            item.add_marker(pytest.mark.deploy)
        elif "/tests/reliability/" in path:
            item.add_marker(pytest.mark.reliability)


def pytest_configure(config: pytest.Config) -> None:
    # tests/deploy: kustomize renders deploy/ and the manifests are validated offline.
    config.addinivalue_line("markers", "deploy: Kubernetes manifests rendered and validated")
    # tests/reliability (`make test-reliability`); `slow` cases, anywhere, take most of a minute
    # or more each and are left out of `make test` (which must stay under 20 minutes on a
    # 2-core machine): `make test-slow` runs them.
    config.addinivalue_line("markers", "reliability: faults, load, bad input and security")
    config.addinivalue_line("markers", "slow: long; left out of make test, run by make test-slow")
