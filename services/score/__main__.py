"""`python -m services.score <command>` (`--help` lists them): the score service on the shell.

A bad rules file stops the start (and `simulate`) with the file, line and field at fault; a
good one is adopted as a rules version when its content is new (`rules_versions`). HTTP (API
port): explain, the rules' versions and simulations, the models (see http.py and
learning/api.py), and the API's documentation at `/docs`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from services.score import repository
from services.score.config import ScoreSettings
from services.score.engine.explain import render_text
from services.score.engine.rescoring import render_summary
from services.score.engine.ruleset import RuleSet
from services.score.handler import ScoreHandler
from services.score.housekeeping import housekeeping
from services.score.http import score_api
from services.score.learning.api import models_api
from services.score.learning.proposals import NothingToPropose, propose_rules
from services.score.learning.report import render_model, render_versions
from services.score.learning.runs import (
    MODELS,
    parse_model,
    publish,
    resolve_version,
    scheduled_training,
    train_and_store,
)
from services.score.lookups import explain_lead, simulate_stored
from services.score.repository import SCHEMA
from services.score.rules_versions import RULES, adopt_rules_file, live_rules, read_rules_file
from services.score.sweep import RescoreSweep, sweep_decayed_mqls
from shared.companions import Companion
from shared.consumer.failures import retried_while_transient
from shared.db import unit_of_work
from shared.operator import OperatorCommand, OperatorError, Report, table
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.simulations import Simulations
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED, PRIVACY_ERASURES, SCORE_COMMANDS
from shared.versions_view import publications_table, versions_table


@asynccontextmanager
async def start(resources: Resources[ScoreSettings]) -> AsyncIterator[Running]:
    """The rules file is adopted first (`rules_versions`: published if its content is new);
    then every batch, sweep and request reads the live rules version itself."""
    settings = resources.settings
    sessions = resources.database()
    await retried_while_transient(
        lambda: adopt_rules_file(sessions, settings.rules_file),
        what="adopting the rules file",
        give_up_after_s=settings.consumer.retry_give_up_after_s,
    )
    rescore = RescoreSweep(under="rules")
    model_rescore = RescoreSweep(under="model")
    simulations = Simulations(schema=SCHEMA, sessions=sessions)
    try:
        yield Running(
            handler=ScoreHandler(RULES),
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
                Companion(
                    name="model rescore sweep",
                    round=lambda: model_rescore.step(
                        sessions=sessions, commands=resources.commands, settings=settings
                    ),
                    retry_after_s=settings.rescore_interval_s,
                ),
                Companion(
                    name="housekeeping",
                    round=lambda: housekeeping(sessions=sessions, settings=settings),
                    retry_after_s=settings.housekeeping_interval_s,
                ),
                *(
                    [
                        Companion.every(
                            "model training",
                            # looks often, trains when the last training is
                            # `retrain_interval_h` old
                            min(3600.0, settings.retrain_interval_h * 3600),
                            lambda: scheduled_training(
                                sessions,
                                interval_h=settings.retrain_interval_h,
                                auto_publish=settings.auto_publish,
                            ),
                        )
                    ]
                    if settings.retrain_interval_h > 0
                    else []
                ),
            ],
            routers=[
                *score_api(
                    sessions=sessions,
                    rescore=rescore.progress,
                    simulations=simulations,
                    simulate_budget_s=settings.simulate_budget_s,
                ),
                models_api(sessions=sessions, rescore=model_rescore.progress),
            ],
        )
    finally:
        await simulations.close()


async def explain(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        explanation = await explain_lead(
            session, args.lead, await live_rules(session), datetime.now(UTC)
        )
    if explanation is None:
        raise OperatorError(f"no lead with id or email {args.lead!r}")
    return Report(text=render_text(explanation), data=explanation.model_dump(mode="json"))


async def simulate(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    # named by its file: a candidate is no version (its label may copy a live one's)
    document = read_rules_file(args.rules)
    candidate = RuleSet.model_validate({**document, "version": args.rules.name})
    async with resources.database()() as session:
        live = await live_rules(session)
    summary = await simulate_stored(
        resources.database(), live=live, candidate=candidate, at=datetime.now(UTC)
    )
    return Report(text=render_summary(summary), data=summary.model_dump(mode="json"))


async def rules_command(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        live = await RULES.live_version(session)
        versions = await RULES.versions(session, limit=args.limit)
        publications = await RULES.publications(session, limit=args.limit)
    text = versions_table(versions, live=live)
    if publications:
        text += "\n\nlatest publications:\n" + publications_table(publications)
    return Report(
        text=text,
        data={"live": live, "versions": [asdict(v) for v in versions],
              "publications": [asdict(p) for p in publications]},
    )  # fmt: skip


async def publish_rules_command(
    resources: Resources[ScoreSettings], args: argparse.Namespace
) -> Report:
    async with unit_of_work(resources.database()) as session:
        try:
            publication = await RULES.publish(
                session, args.version, by=_who(args), note=args.note or ""
            )
        except LookupError as exc:
            raise OperatorError(str(exc)) from None
    text = (
        f"rules {publication.version} are live (were {publication.previous or 'none'}); every "
        "replica scores with them from its next batch, and the rescore sweep rescores the "
        "stored leads in the background"
    )
    return Report(text=text, data=asdict(publication))


def _who(args: argparse.Namespace) -> str:
    return str(args.by or os.environ.get("USER") or "operator")


async def train_command(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    settings = resources.settings
    async with resources.database()() as session:
        rules = await live_rules(session)
    report = await train_and_store(
        resources.database(),
        rules=rules,
        settings=settings.learning,
        requested_by=_who(args),
        note=args.note or "",
        now=datetime.now(UTC),
        drift_margin=settings.drift_margin,
        run_id=args.run,
        publish_if_better=args.publish_if_better,
    )
    if report.refused is not None:
        raise OperatorError(f"training refused: {report.refused}", exit_code=2)
    assert report.model is not None
    assert report.version is not None
    peak_mb = peak_memory_mb()
    text = (
        f"model {report.version} stored ({report.leads} leads read and trained on in "
        f"{report.seconds:.0f} s, {peak_mb:.0f} MB at most); publish it with: "
        f"python -m services.score publish {report.version}\n\n"
        + render_model(report.model, version=report.version, live=False)
    )
    return Report(text=text, data={"run_id": report.run_id, "version": report.version,
                                   "leads": report.leads, "seconds": report.seconds,
                                   "peak_rss_mb": peak_mb,
                                   "model": report.model.model_dump(mode="json")})  # fmt: skip


async def models_command(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        live = await MODELS.live(session)
        live_version = live[0] if live is not None else None
        if args.version is None:
            versions = await MODELS.versions(session)
            runs = await repository.trainings(session, limit=5)
            text = render_versions(versions, live=live_version)
            if runs:
                text += "\n\nlatest trainings:\n" + table(
                    ["run", "by", "started (UTC)", "status", "message"],
                    [(r.run_id, r.requested_by, f"{r.started_at:%Y-%m-%d %H:%M}", r.status,
                      r.message) for r in runs],
                )  # fmt: skip
            data = {"live": live_version, "versions": [asdict(v) for v in versions],
                    "trainings": [asdict(r) for r in runs]}  # fmt: skip
            return Report(text=text, data=data)
        found = await resolve_version(session, args.version)
        rules_version = await RULES.live_version(session)
    if found is None or found.document is None:
        raise OperatorError(f"no model version {args.version!r}")
    model = parse_model(found.document)
    if args.svg is not None:
        from services.score.learning.picture import evaluation_svg  # matplotlib: when asked

        args.svg.write_bytes(evaluation_svg(model, version=found.version))
    text = render_model(
        model,
        version=found.version,
        live=found.version == live_version,
        rules_version=rules_version or "none",
    )
    return Report(text=text, data={"version": found.version, "model": found.document})


async def publish_command(resources: Resources[ScoreSettings], args: argparse.Namespace) -> Report:
    async with unit_of_work(resources.database()) as session:
        try:
            publication = await publish(session, args.version, by=_who(args), note=args.note or "")
        except LookupError as exc:
            raise OperatorError(str(exc)) from None
    text = (
        f"model {publication.version} is live (was {publication.previous or 'none'}); every "
        "replica scores with it from its next batch, and the rescore sweep gives the stored "
        "leads their likelihood in the background"
    )
    return Report(text=text, data=asdict(publication))


async def propose_rules_command(
    resources: Resources[ScoreSettings], args: argparse.Namespace
) -> Report:
    async with resources.database()() as session:
        found = await resolve_version(session, args.version)
        rules = await live_rules(session)
    if found is None or found.document is None:
        raise OperatorError(f"no model version {args.version!r}")
    try:
        proposal = propose_rules(
            parse_model(found.document),
            rules,
            model_version=found.version,
        )
    except NothingToPropose as exc:
        raise OperatorError(str(exc)) from None
    if args.out is not None:
        args.out.write_text(proposal.text)
        text = (
            f"proposed rules {proposal.version} written to {args.out}; see what they would "
            f"change: python -m services.score simulate {args.out}"
        )
    else:
        text = proposal.text
    return Report(text=text, data={"version": proposal.version, "rules": proposal.text,
                                   "changes": [asdict(c) for c in proposal.changes]})  # fmt: skip


def peak_memory_mb() -> float:
    """This process's resident high-water mark: what a training of this many leads needs
    (docs/learning.md). VmHWM where Linux has it: `ru_maxrss` also counts, after a fork and an
    exec, the parent's size at the fork (the score replica or bench that started the run)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--note", help="why this training (kept with the model)")
    parser.add_argument("--by", help="who trains (default: $USER)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # a run the API or schedule recorded
    parser.add_argument(
        "--publish-if-better",
        action="store_true",
        help="publish the model when it ranks its test leads better than the live model does",
    )


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", nargs="?", help="a version, latest or live (none: list all)")
    parser.add_argument("--svg", type=Path, help="also write its evaluation picture there")


def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", help="a version, or latest")
    parser.add_argument("--note", help="why (kept in the publication history)")
    parser.add_argument("--by", help="who publishes (default: $USER)")


def _propose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", nargs="?", default="live", help="a version, latest or live")
    parser.add_argument("--out", type=Path, help="write the rules file there (default: print)")


SERVICE = Service(
    name="score",
    summary="Scores leads (fit and behaviour, with decay) and moves them along the lifecycle.",
    settings=ScoreSettings,
    start=start,
    check_files=lambda settings: read_rules_file(settings.rules_file),
    database=Database(schema=SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS, PRIVACY_ERASURES],
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
        OperatorCommand(
            name="rules",
            help="the scoring rules' versions, which one is live, who saved them and why",
            arguments=lambda parser: parser.add_argument(
                "--limit", type=int, default=20, help="how many versions (newest first)"
            ),
            run=rules_command,
        ),
        OperatorCommand(
            name="publish-rules",
            help="make a rules version live in every replica (an earlier one: a rollback)",
            arguments=_publish_arguments,
            run=publish_rules_command,
        ),
        OperatorCommand(
            name="train",
            help="train a model of who converts on the stored history and CRM outcomes, "
            "evaluate it beside the rules and store it (not published)",
            arguments=_train_arguments,
            run=train_command,
        ),
        OperatorCommand(
            name="models",
            help="the trained models, or one model's evaluation, factors and notes",
            arguments=_models_arguments,
            run=models_command,
        ),
        OperatorCommand(
            name="publish",
            help="make a trained model live in every replica (an earlier one: a rollback)",
            arguments=_publish_arguments,
            run=publish_command,
        ),
        OperatorCommand(
            name="propose-rules",
            help="a rules file whose points follow what a model learned, to simulate",
            arguments=_propose_arguments,
            run=propose_rules_command,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
