"""The reliability suite (`make test-reliability`): chaos, scaling, bad input and security
against the real broker, PostgreSQL and service processes. Cases marked `slow` (minutes each)
run only there; the rest also run in `make test`."""

from __future__ import annotations

from tests.fixtures.outage import outage_pipeline, restartable_postgres

__all__ = ["outage_pipeline", "restartable_postgres"]
