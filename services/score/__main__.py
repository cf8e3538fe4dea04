"""`python -m services.score <command>`.

run                 consume events.enriched, crm.feedback and score.commands until SIGTERM
migrate             bring the `score` schema to the newest revision
explain KEY         why a lead (id or email) has its score: rule by rule, and its stages
simulate RULES      what a candidate rules file would change: who would become MQL, who
                    would drop, how many scores move (nothing is written)

A bad rules file stops the start (and `simulate`) with the file, line and field at fault.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.score.config import ScoreSettings
from services.score.engine.explain import render_text
from services.score.engine.rescoring import SimulationReport, simulate
from services.score.engine.ruleset import RulesFileError, load_rules
from services.score.handler import ScoreHandler
from services.score.http import explain_routes
from services.score.lookups import explain_lead, lead_histories
from services.score.repository import SCHEMA
from services.score.sweep import sweep_decayed_mqls, sweep_leads_on_old_rules
from shared.db import create_engine, create_sessionmaker
from shared.service import Companion, consumer_service_main
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED, SCORE_COMMANDS

# One rule set per process: the handler, the rescore sweep and explain must agree on the version.
rules_from = functools.cache(load_rules)


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
                lambda: sweep_leads_on_old_rules(
                    sessions=context.sessions,
                    producer=context.producer,
                    settings=settings,
                    version=rules_from(settings.rules_file).version,
                ),
            ),
        ],
        make_routes=lambda settings, sessions: explain_routes(
            rules_from(settings.rules_file), sessions
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
        candidate = load_rules(Path(argument))
        report = SimulationReport(candidate_version=candidate.version)
        async for chunk in lead_histories(sessions):
            simulate(live, candidate, chunk, at=now, into=report)
        print(f"rules {live.version} -> {candidate.version}: {report.leads} leads")
        print(f"  scores that change:     {report.score_changed}")
        print(f"  grades that change:     {report.grade_changed}")
        print(f"  would become MQL:       {len(report.would_become_mql)}")
        for delta in report.would_become_mql[:50]:
            print(
                f"    {delta.lead_id} ({delta.stage}) {delta.before.priority} -> {delta.after.priority}"
            )
        print(f"  would drop below MQL:   {len(report.would_drop_below_mql)}")
        for delta in report.would_drop_below_mql[:50]:
            print(f"    {delta.lead_id} {delta.before.total} -> {delta.after.total}")
        return 0
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
