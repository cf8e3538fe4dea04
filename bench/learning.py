"""leadflow learns: what a training costs, and what the likelihood adds to each scored event.

- **Training**: a world of leads with CRM outcomes (tests/fixtures/world.py: profiles, a month
  of behaviour each, outcomes drawn from a hidden ground truth) written into score's tables as
  the service stores them (leads, history, feedback), then `python -m services.score train`
  run as its own process, the way the API and the schedule run it: its wall time (reading
  every stored history, building the examples, fitting, evaluating, storing the version) and
  its peak RSS, for `TRAINING_SIZES` leads (10k and 100k).
- **Inference per event**: the work the live path adds to a scored message while a model is
  published (`Activity.observe`, the features, the prediction, the contract's likelihood), on
  a lead of the world with the model trained on it: microseconds per event, one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import asyncpg
import orjson

from bench.figures import Figure, at_most
from bench.infra import REPO, BenchInfra
from services.score.engine.rescoring import HistoryItem
from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.engine.scoring import ScoreState, evaluate, score_event
from services.score.learning.activity import Activity
from services.score.learning.model import LikelihoodModel, Scorer
from services.score.learning.runs import parse_model
from tests.fixtures.world import WorldLead, generate

SECTION = "learning"
TRAINING_SIZES = tuple(
    int(size) for size in os.environ.get("BENCH_LEARNING_SIZES", "10000,100000").split(",")
)
INFERENCE_EVENTS = 20_000


async def run(infra: BenchInfra) -> list[Figure]:
    figures: list[Figure] = []
    document = None
    for size in TRAINING_SIZES:
        url = await infra.fresh_database()
        try:
            world = generate(size, seed=size)
            seeded = await _seed(url, world)
            del world
            print(f"[bench] learning: {size} leads seeded in {seeded:.0f}s", flush=True)
            seconds, peak_mb, document = await _train(url)
        finally:
            await infra.drop_database(url)
        large = size >= 100_000
        figures += [
            at_most(
                SECTION, f"training, {size:,} leads: wall time", seconds, "s", 600 if large else 120
            ),
            at_most(
                SECTION,
                f"training, {size:,} leads: peak memory",
                peak_mb,
                "MB",
                4096 if large else 1024,
            ),
        ]
        auc = document["model"]["evaluation"]
        print(
            f"[bench] learning: {size} leads, AUC {auc['model']['auc']} (rules "
            f"{auc['rules']['auc']})",
            flush=True,
        )
    if document is not None:
        inference = _inference_us(parse_model(document["model"]))
        figures.append(
            at_most(SECTION, "likelihood per scored event (live path)", inference, "us", 100)
        )
    return figures


async def _seed(url: str, world: list[WorldLead]) -> float:
    """The world as score stores it: identified leads, their scored messages, their outcomes
    with what the lifecycle made of each."""
    started = time.monotonic()
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await connection.copy_records_to_table(
            "leads",
            schema_name="score",
            columns=["lead_id", "stage", "identified", "fit", "behaviour", "rule_version"],
            records=[(lead.lead_id, "lead", True, 0, 0, "seed") for lead in world],
        )
        await connection.copy_records_to_table(
            "history",
            schema_name="score",
            columns=["lead_id", "message_id", "at", "behaviour", "profile", "facts"],
            records=[
                (
                    lead.lead_id,
                    item.message_id,
                    item.at,
                    item.behaviour,
                    True,
                    orjson.dumps(item.facts).decode(),
                )
                for lead in world
                for item in lead.history()
            ],
        )
        await connection.copy_records_to_table(
            "feedback",
            schema_name="score",
            columns=["feedback_id", "lead_id", "outcome", "applied", "result", "detail", "at"],
            records=[
                (
                    f"{lead.lead_id}:{n}",
                    lead.lead_id,
                    o.outcome,
                    o.result == "applied",
                    o.result,
                    "",
                    o.at,
                )
                for lead in world
                for n, o in enumerate(lead.outcomes())
            ],
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.monotonic() - started


async def _train(url: str) -> tuple[float, float, dict[str, Any]]:
    """`python -m services.score train` on the database: (wall s, peak RSS MB, its report)."""
    env = os.environ | {"LEADFLOW_DATABASE_URL": url}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.score", "train", "--by", "bench", "--json",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    seconds = time.monotonic() - started
    if process.returncode:
        raise RuntimeError(f"training failed ({process.returncode}): {err.decode()[-2000:]}")
    report = json.loads(out)
    return seconds, float(report["peak_rss_mb"]), report


def _inference_us(model: LikelihoodModel) -> float:
    """Microseconds the live path adds per scored event: observe, features, predict."""
    scorer = Scorer(model)
    rules = load_rules(DEFAULT_RULES_FILE)
    leads = generate(400, seed=11)
    prepared: list[tuple[HistoryItem, ScoreState, dict[str, Any]] | None] = []
    for lead in leads:
        state = ScoreState()
        prepared.append(None)  # a new lead: a new activity
        for item in lead.history():
            state = score_event(rules, state, item.facts, at=item.at, message_id=item.message_id,
                                behaviour=item.behaviour).state  # fmt: skip
            picture = {k: v for k, v in item.facts.items() if k.startswith("profile.")}
            prepared.append((item, state, picture))
    prepared = (prepared * (INFERENCE_EVENTS // len(prepared) + 1))[:INFERENCE_EVENTS]
    activity = Activity()
    started = time.perf_counter()
    for step in prepared:
        if step is None:
            activity = Activity()
            continue
        item, state, picture = step
        activity.observe(item.facts, at=item.at, behaviour=item.behaviour, keep_s=scorer.keep_s)
        card = evaluate(rules, state, item.at)
        scorer.lead_likelihood(activity, picture, card=card, state=state, at=item.at,
                               version="bench")  # fmt: skip
    elapsed = time.perf_counter() - started
    # the card is the live path's already: time it apart and take it out
    started = time.perf_counter()
    for step in prepared:
        if step is not None:
            evaluate(rules, step[1], step[0].at)
    elapsed -= time.perf_counter() - started
    return elapsed / sum(1 for step in prepared if step is not None) * 1e6
