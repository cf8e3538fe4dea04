"""`python -m services.score <command>` (`--help` lists them): the score service on the shell.

A bad rules file stops the start (and `simulate`) with the file, line and field at fault.
HTTP (health port): explain, `POST /v1/rules/simulate`, `GET /v1/rules/rescore` (see http.py),
and the API's documentation at `/docs`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from services.score.config import ScoreSettings
from services.score.engine.explain import render_text
from services.score.engine.rescoring import render_summary
from services.score.engine.ruleset import load_rules
from services.score.handler import ScoreHandler
from services.score.http import score_api
from services.score.lookups import explain_lead, simulate_stored
from services.score.repository import SCHEMA
from services.score.sweep import RescoreSweep, sweep_decayed_mqls
from shared.companions import Companion
from shared.operator import OperatorCommand, OperatorError, Report
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED, SCORE_COMMANDS


@asynccontextmanager
async def start(resources: Resources[ScoreSettings]) -> AsyncIterator[Running]:
    """One rule set per process: the handler, the sweeps and the endpoints agree on its version."""
    settings = resources.settings
    rules = load_rules(resources.settings.rules_file)
    sessions = resources.database()
    rescore = RescoreSweep(version=rules.version)
    yield Running(
        handler=ScoreHandler(rules),
        companions=[
            Companion.every(
                "decay sweep",
                settings.sweep_interval_s,
                lambda: sweep_decayed_mqls(
                    sessions=sessions, commands=resources.commands, settings=settings
                ),
            ),
            Companion(
                name="rescore sweep",
                round=lambda: rescore.step(
                    sessions=sessions, commands=resources.commands, settings=settings
                ),
                retry_after_s=settings.rescore_interval_s,
            ),
        ],
        routers=[
            score_api(
                rules=rules,
                sessions=sessions,
                rescore=rescore.progress,
                simulate_budget_s=resources.settings.simulate_budget_s,
            )
        ],
    )


async def explain(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        explanation = await explain_lead(
            session, args.lead, load_rules(resources.settings.rules_file), datetime.now(UTC)
        )
    if explanation is None:
        raise OperatorError(f"no lead with id or email {args.lead!r}")
    return Report(text=render_text(explanation), data=explanation.model_dump(mode="json"))


async def simulate(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    live = load_rules(resources.settings.rules_file)
    candidate = load_rules(args.rules)
    summary = await simulate_stored(
        resources.database(), live=live, candidate=candidate, at=datetime.now(UTC)
    )
    text = render_summary(summary)
    if candidate.version == live.version:
        text = (
            f"warning: {args.rules} has the live rules' version ({live.version}); give the "
            "candidate a version of its own, or the rescore after it goes live will skip "
            "every lead already scored under this one\n" + text
        )
    return Report(text=text, data=summary.model_dump(mode="json"))


SERVICE = Service(
    name="score",
    summary="Scores leads (fit and behaviour, with decay) and moves them along the lifecycle.",
    settings=ScoreSettings,
    start=start,
    database=Database(schema=SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS],
    commands=[
        OperatorCommand(
            name="explain",
            help="why a lead (id or email) has its score: rule by rule, and its stages",
            arguments=lambda parser: parser.add_argument("lead", help="lead id or email"),
            run=explain,
        ),
        OperatorCommand(
            name="simulate",
            help="what a candidate rules file would change on the stored leads: who would "
            "become MQL, who would drop, how many scores move (nothing is written)",
            arguments=lambda parser: parser.add_argument(
                "rules", type=Path, help="the candidate rules file (YAML)"
            ),
            run=simulate,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
