"""Training runs, model versions and publishing: the I/O around the pure learning modules.

- `MODELS`: the trained models, versions of the kind `model` in score's versioned configuration
  (`shared.config_versions`): each stored with its metrics, training window, features and who
  trained it; one live. The handler asks `MODELS.live` once per batch, so a publication reaches
  every replica at its next batch, and a batch never mixes two models.
- `train_and_store`: read every identified lead's example, train, store the model as a new
  version (never publishing it: a person decides, or `auto_publish` on the schedule). Each run
  is recorded in `score.trainings` with what it stored or why it refused.
- `publish`: make a version live; the rescore sweep then gives every lead its likelihood under
  it in the background. Rolling back is publishing an earlier version.

Training runs in a process of its own (`python -m services.score train`): the API and the
schedule start that command (`start_training_process`), so a training never holds the event
loop or the memory of a replica that scores live.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.engine.ruleset import RuleSet
from services.score.learning.features import describe
from services.score.learning.model import LikelihoodModel, Scorer
from services.score.learning.proposals import proposable
from services.score.learning.settings import TrainingSettings
from services.score.repository import SCHEMA
from shared.config_versions import ConfigVersion, Publication, VersionedConfig
from shared.db import unit_of_work

if TYPE_CHECKING:
    from services.score.learning.training import Examples

log = logging.getLogger(__name__)

MODELS: VersionedConfig[Scorer] = VersionedConfig(
    schema=SCHEMA, kind="model", parse=lambda document: Scorer(parse_model(document))
)
TRAINING_TAKEN_FOR_DEAD = timedelta(hours=6)
"""A run still `running` after this long is taken for dead (its process went away)."""


def parse_model(document: dict[str, Any]) -> LikelihoodModel:
    return LikelihoodModel.model_validate(document)


@dataclass(frozen=True)
class TrainingReport:
    run_id: str
    seconds: float
    leads: int
    version: str | None = None
    model: LikelihoodModel | None = None
    refused: str | None = None


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


async def train_and_store(
    sessions: async_sessionmaker[AsyncSession],
    *,
    rules: RuleSet,
    settings: TrainingSettings,
    requested_by: str,
    note: str,
    now: datetime,
    drift_margin: float,
    run_id: str | None = None,
    publish_if_better: bool = False,
) -> TrainingReport:
    """One training run (see the module doc). `run_id`: a run already recorded as running (by
    whoever started this process); None records a new one. `publish_if_better`: publish the
    new model when none is live, or when it ranks its test leads better than the live model
    ranks the same leads. A refusal is a report, not an error; anything else is recorded as
    failed and raised."""
    # scikit-learn, scipy and numpy (about 120 MB) only in the process that trains, never in a
    # score replica that imports this module for `MODELS`
    from services.score.learning.dataset import read_dataset
    from services.score.learning.training import TrainingRefused, recent_auc, train

    started = time.monotonic()
    if run_id is None:
        run_id = new_run_id(now)
        async with unit_of_work(sessions) as session:
            await repository.start_training(session, run_id=run_id, requested_by=requested_by)
    dataset = None
    try:
        dataset = await read_dataset(sessions, rules=rules, settings=settings, now=now)
        async with sessions() as session:
            live = await MODELS.live(session)
        drift = [] if live is None else check_drift(dataset.examples, live, margin=drift_margin)
        rival = None  # the live model's AUC on the test leads, when it has one
        model = train(
            dataset.examples,
            settings=settings,
            describe=lambda feature: describe(feature, rules),
            proposable=lambda feature: proposable(feature, rules, dataset.covered_kinds),
            rules_version=rules.version,
            trained_by=requested_by,
            now=now,
            notes=[*drift, *dataset.notes()],
        )
    except TrainingRefused as refused:
        async with unit_of_work(sessions) as session:
            await repository.finish_training(
                session, run_id=run_id, status="refused", message=str(refused)
            )
        leads = dataset.leads if dataset is not None else 0
        return TrainingReport(run_id, time.monotonic() - started, leads, refused=str(refused))
    except BaseException:
        async with unit_of_work(sessions) as session:
            await repository.finish_training(
                session, run_id=run_id, status="failed", message="failed: see the service log"
            )
        raise
    if live is not None:
        # the live model on the new model's test leads: newer than the last of its training
        found = recent_auc(dataset.examples, live[1].model, since=model.training.last_cutoff)
        rival = found[0] if found is not None else None
    async with unit_of_work(sessions) as session:
        live = await MODELS.live(session)
        stored = await MODELS.save(
            session,
            document=model.model_dump(mode="json"),
            author=requested_by,
            note=note or f"trained on {model.training.leads} leads",
            parent=live[0] if live is not None else None,
        )
        await repository.finish_training(
            session,
            run_id=run_id,
            status="stored",
            message="; ".join(
                [summary_line(model), *(n for n in model.notes if n.startswith("drifting"))]
            ),
            version=stored.version,
        )
        if publish_if_better and (
            live is None or (rival is not None and model.evaluation.model.auc > rival)
        ):
            await MODELS.publish(
                session,
                stored.version,
                by=requested_by,
                note=f"published by its training: test AUC {model.evaluation.model.auc:.3f}"
                + (f" against the live model's {rival:.3f}" if rival is not None else ""),
            )
    return TrainingReport(
        run_id, time.monotonic() - started, dataset.leads, version=stored.version, model=model
    )


def check_drift(examples: Examples, live: tuple[str, Scorer], *, margin: float) -> list[str]:
    from services.score.learning.training import recent_auc  # see `train_and_store`

    """A note on how the live model ranks the leads newer than its own test leads (kept with
    the new model and in the run's message): drifting, and a warning logged, when its AUC
    there is `margin` below its test AUC."""
    version, scorer = live
    model = scorer.model
    found = recent_auc(examples, model, since=model.evaluation.last_cutoff)
    if found is None:
        return []
    auc, leads = found
    note = (
        f"the live model {version} ranks the {leads} leads newer than its own test leads at "
        f"AUC {auc:.3f} (test AUC {model.evaluation.model.auc:.3f})"
    )
    if auc < model.evaluation.model.auc - margin:
        log.warning("model drift: %s, more than %.2f below: retrain and publish", note, margin)
        return [f"drifting: {note}, more than {margin:.2f} below"]
    return [note]


def summary_line(model: LikelihoodModel) -> str:
    e = model.evaluation
    return (
        f"AUC {e.model.auc:.3f} (rules {e.rules.auc:.3f}), top-decile lift "
        f"{e.model.lift_top_decile:.2f} (rules {e.rules.lift_top_decile:.2f}), Brier "
        f"{e.model.brier:.4f} (rules {e.rules.brier:.4f}) on {e.test_leads} newer leads"
    )


async def resolve_version(session: AsyncSession, version: str) -> ConfigVersion | None:
    """A stored model by version, `latest` (the newest stored) or `live`."""
    if version == "latest":
        newest = await MODELS.versions(session, limit=1)
        return await MODELS.get(session, newest[0].version) if newest else None
    if version == "live":
        live = await MODELS.live(session)
        return await MODELS.get(session, live[0]) if live is not None else None
    return await MODELS.get(session, version)


async def publish(session: AsyncSession, version: str, *, by: str, note: str = "") -> Publication:
    """Make a stored model live (`latest` or a version); LookupError for none such."""
    found = await resolve_version(session, version)
    if found is None:
        raise LookupError(f"no model version {version!r}")
    return await MODELS.publish(session, found.version, by=by, note=note)


async def start_training_process(
    sessions: async_sessionmaker[AsyncSession],
    *,
    requested_by: str,
    now: datetime,
    publish_if_better: bool = False,
) -> str:
    """Record a run and start `python -m services.score train --run <id>` for it, detached
    from this process's event loop; returns the run id. RuntimeError when a run is already
    going (one at a time: a training reads every stored history)."""
    run_id = new_run_id(now)
    async with unit_of_work(sessions) as session:
        running = await repository.training_running_since(session, now - TRAINING_TAKEN_FOR_DEAD)
        if running is not None:
            raise RuntimeError(f"training {running} is still running; wait for it to finish")
        await repository.start_training(session, run_id=run_id, requested_by=requested_by)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.score",
        "train",
        "--run",
        run_id,
        "--by",
        requested_by,
        *(["--publish-if-better"] if publish_if_better else []),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,  # its report is in score.trainings; its log on stderr
        env=os.environ.copy(),
    )
    reaper = asyncio.ensure_future(_reap(process, run_id, sessions))
    _REAPERS.add(reaper)  # held until done: the loop keeps only weak references to tasks
    reaper.add_done_callback(_REAPERS.discard)
    return run_id


_REAPERS: set[asyncio.Future[None]] = set()


async def scheduled_training(
    sessions: async_sessionmaker[AsyncSession], *, interval_h: float, auto_publish: bool
) -> None:
    """A companion's round: start a training when the latest one (by any replica, on demand or
    scheduled) started more than `interval_h` ago."""
    now = datetime.now(UTC)
    async with sessions() as session:
        latest = await repository.trainings(session, limit=1)
    if latest and latest[0].started_at > now - timedelta(hours=interval_h):
        return
    try:
        run_id = await start_training_process(
            sessions, requested_by="schedule", now=now, publish_if_better=auto_publish
        )
    except RuntimeError as exc:  # another replica's run started in between
        log.info("scheduled training skipped: %s", exc)
        return
    log.info("scheduled training %s started", run_id)


async def _reap(
    process: asyncio.subprocess.Process,
    run_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Wait for a training process; one that died without recording its end (killed: out of
    memory, say) is recorded as failed, so the next training need not wait for it."""
    code = await process.wait()
    if code in (0, 2):  # stored, or refused (both recorded by the run itself)
        log.info("training %s done", run_id)
        return
    log.warning("training %s ended with exit code %d", run_id, code)
    async with unit_of_work(sessions) as session:
        await repository.fail_training_if_running(
            session,
            run_id=run_id,
            message=f"the training process ended with exit code {code} (a negative code is the "
            "signal that killed it: -9 is often the memory limit)",
        )
