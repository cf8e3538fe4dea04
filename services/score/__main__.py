"""`python -m services.score <command>`.

run                 consume events.enriched, crm.feedback and score.commands until SIGTERM
migrate             bring the `score` schema to the newest revision
explain KEY         why a lead (id or email) has its score: rule by rule, and its stages
simulate RULES      what a candidate rules file would change: who would become MQL, who
                    would drop, how many scores move (nothing is written)

A bad rules file stops the start (and `simulate`) with the file, line and field at fault.
HTTP (health port): explain, `POST /v1/rules/simulate`, `GET /v1/rules/rescore` (see http.py).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.score.config import ScoreSettings
from services.score.engine.explain import render_text
from services.score.engine.rescoring import render_summary
from services.score.engine.ruleset import RulesFileError, load_rules
from services.score.handler import ScoreHandler
from services.score.http import score_routes
from services.score.lookups import explain_lead, simulate_stored
from services.score.repository import SCHEMA
from services.score.sweep import RescoreSweep, sweep_decayed_mqls
from shared.db import create_engine, create_sessionmaker
from shared.service import Companion, consumer_service_main
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED, SCORE_COMMANDS

# One rule set per process: the handler, the rescore sweep and explain must agree on the version.
rules_from = functools.cache(load_rules)


@functools.cache
def rescore_sweep(rules_file: Path) -> RescoreSweep:
    """The process's rescore sweep: its companion runs it, `GET /v1/rules/rescore` reads it."""
    return RescoreSweep(version=rules_from(rules_file).version)


def main(argv: list[str]) -> int:
    if argv[:1] in (["explain"], ["simulate"]) and len(argv) == 2:
        try:
            return asyncio.run(_operator(argv[0], argv[1], ScoreSettings()))
        except RulesFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return consumer_service_main(
        service="score",
        load_settings=ScoreSettings,
        make_handler=lambda settings: ScoreHandler(rules_from(settings.rules_file)),
        subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS],
        migrations_dir=Path(__file__).parent / "migrations",
        schema=SCHEMA,
        make_companions=lambda settings, context: [
            Companion(
                "decay sweep",
                settings.sweep_interval_s,
                lambda: sweep_decayed_mqls(
                    sessions=context.sessions, producer=context.producer, settings=settings
                ),
            ),
            Companion(
                "rescore sweep",
                settings.rescore_interval_s,
                lambda: rescore_sweep(settings.rules_file).round(
                    sessions=context.sessions, producer=context.producer, settings=settings
                ),
            ),
        ],
        make_routes=lambda settings, sessions: score_routes(
            rules=rules_from(settings.rules_file),
            sessions=sessions,
            rescore=rescore_sweep(settings.rules_file).progress,
        ),
        argv=argv,
    )


async def _operator(command: str, argument: str, settings: ScoreSettings) -> int:
    live = rules_from(settings.rules_file)
    engine = create_engine(settings.database, application_name=f"leadflow-score-{command}")
    sessions = create_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        if command == "explain":
            async with sessions() as session:
                explanation = await explain_lead(session, argument, live, now)
            if explanation is None:
                print(f"no lead with id or email {argument!r}", file=sys.stderr)
                return 1
            print(render_text(explanation))
            return 0
        summary = await simulate_stored(
            sessions, live=live, candidate=load_rules(Path(argument)), at=now
        )
        print(render_summary(summary))
        return 0
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
