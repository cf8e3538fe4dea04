"""The pipeline benchmark's verdicts cannot flatter: when a load counts as kept up with, when the
pipeline counts as drained, and how percentiles are taken (bench/pipeline.py, bench/drain.py,
bench/posting.py). Pure: no broker, no database."""

from __future__ import annotations

import math

import pytest

from bench.drain import Reading, is_drained
from bench.pipeline import (
    DRAIN_LIMIT_S,
    Decision,
    Trial,
    _old_method_p99,
    _percentile,
    sustained_ladder,
)
from bench.posting import Posted

READS = {"enrich": ["p.events.raw"], "score": ["p.events.enriched", "p.crm.feedback"]}
ENDS = {("p.events.raw", 0): 10, ("p.events.raw", 1): 5, ("p.events.enriched", 0): 7}


def reading(
    enrich: dict[tuple[str, int], int],
    score: dict[tuple[str, int], int],
    *,
    waiting: dict[str, int] | None = None,
) -> Reading:
    """Positions per service; `waiting`: outputs not yet acknowledged, per service."""
    return Reading(
        positions={"enrich": enrich, "score": score},
        outboxes={"enrich": 0, "score": 0} | (waiting or {}),
    )


AT_END = reading({("p.events.raw", 0): 10, ("p.events.raw", 1): 5}, {("p.events.enriched", 0): 7})


def test_drained_when_every_position_is_at_its_end_and_nothing_moved() -> None:
    # crm.feedback has no records: no stored position and no end offset to reach.
    assert is_drained(AT_END, ENDS, AT_END, reads=READS)


def test_not_drained_when_a_later_stage_is_behind_though_the_first_caught_up() -> None:
    """The old method's blind spot: enrich at the end, score stalled one record behind."""
    stalled = reading(
        {("p.events.raw", 0): 10, ("p.events.raw", 1): 5}, {("p.events.enriched", 0): 6}
    )
    assert not is_drained(stalled, ENDS, stalled, reads=READS)


def test_not_drained_when_a_partition_was_never_consumed_but_has_records() -> None:
    never = reading({("p.events.raw", 0): 10}, {("p.events.enriched", 0): 7})
    assert not is_drained(never, ENDS, never, reads=READS)


def test_not_drained_while_an_output_waits_for_its_acknowledgement() -> None:
    """Enrich stored its last batch but the broker has not acknowledged the outputs: score may
    be at the end of a topic that is about to grow."""
    waiting = reading(
        {("p.events.raw", 0): 10, ("p.events.raw", 1): 5},
        {("p.events.enriched", 0): 7},
        waiting={"enrich": 3},
    )
    assert not is_drained(waiting, ENDS, waiting, reads=READS)


def test_not_drained_when_a_position_moved_between_the_readings() -> None:
    """A service that moved while the ends were read may have produced past them."""
    before = reading(
        {("p.events.raw", 0): 9, ("p.events.raw", 1): 5}, {("p.events.enriched", 0): 7}
    )
    assert not is_drained(before, ENDS, AT_END, reads=READS)


@pytest.mark.parametrize(
    ("fault", "counts"),
    [
        ("refused", {"refused": 1, "acknowledged": 29_950}),
        ("failed", {"failed": 1, "acknowledged": 29_950}),
        ("late", {"late": 1}),
        ("unsent", {"sent": 599, "acknowledged": 29_950}),
    ],
)
def test_a_load_with_any_batch_not_taken_at_pace_is_not_kept_up_with(
    fault: str, counts: dict[str, int]
) -> None:
    load = Posted(rate=1000, seconds=30, scheduled=600, sent=600, acknowledged=30_000)
    for name, value in counts.items():
        setattr(load, name, value)
    trial = Trial(load, drain_s=0.5, dead_letters=0)

    assert not trial.kept_up
    assert any(fault in f for f in load.faults())


def test_a_load_taken_at_pace_and_drained_in_time_is_kept_up_with_at_its_acknowledged_rate() -> (
    None
):
    load = Posted(rate=1000, seconds=30, scheduled=600, sent=600, acknowledged=30_000)

    assert Trial(load, drain_s=DRAIN_LIMIT_S, dead_letters=0).kept_up
    assert load.achieved == 1000
    assert not Trial(load, drain_s=DRAIN_LIMIT_S + 0.1, dead_letters=0).kept_up
    assert not Trial(load, drain_s=0.1, dead_letters=1).kept_up


def decision(received: float, speed_ms: int, *, old_ms: float | None = None) -> Decision:
    old = speed_ms if old_ms is None else old_ms
    return Decision(
        received=received,
        speed_ms=speed_ms,
        on_broker_ms=speed_ms + 1,
        old_method_ms=old,
        decided=received + old / 1000,
    )


def test_the_percentile_is_over_every_decision_so_a_bad_window_shows() -> None:
    """300 decisions over 30 s, the last 10 s slow: pooled, the p99 is a slow one; the old
    method (median of three windows' p99) reported a fast one."""
    fast = [decision(100 + n / 10, 100) for n in range(200)]
    slow = [decision(120 + n / 10, 900) for n in range(100)]
    every = sorted(d.speed_ms for d in fast + slow)

    assert _percentile(every, 0.99) == 900
    assert _old_method_p99(fast + slow, since=100, seconds=30) == 100


def test_percentile_of_nothing_is_not_a_number() -> None:
    assert math.isnan(_percentile([], 0.99))


class Pipeline:
    """A stand-in pipeline for the ladder: keeps up with loads up to `capacity` (events/s),
    except in the trials listed in `flaky` (by their order); records every load tried."""

    def __init__(self, capacity: float, *, flaky: frozenset[int] = frozenset()) -> None:
        self.capacity, self.flaky = capacity, flaky
        self.tried: list[float] = []

    async def trial(self, rate: float) -> Trial:
        self.tried.append(rate)
        kept = rate <= self.capacity and len(self.tried) - 1 not in self.flaky
        load = Posted(rate=rate, seconds=30, scheduled=1, sent=1, acknowledged=int(rate * 30) - 1)
        return Trial(load, drain_s=0.5 if kept else 30.0, dead_letters=0)


async def test_the_ladder_climbs_from_the_estimate_and_bisects_to_within_a_sixteenth() -> None:
    pipeline = Pipeline(capacity=2600)

    runs = await sustained_ladder(pipeline.trial, estimate=1000, runs=3)

    # 1,000 and 1,500 and 2,000 kept, 3,000 not; bisected: 2,500 kept, 2,750 not, 2,625 not.
    assert pipeline.tried[:6] == [1000, 1500, 2000, 3000, 2500, 2750]
    assert len(runs) == 3
    assert all(2400 < r < 2600 for r in runs)


async def test_below_an_estimate_not_kept_up_with_the_ladder_still_bisects_upwards() -> None:
    """The estimate fails: halving finds a load kept up with, and the ladder bisects between
    it and the load that failed (it once stopped at the half: a figure half the truth)."""
    pipeline = Pipeline(capacity=1900)

    runs = await sustained_ladder(pipeline.trial, estimate=2200, runs=3)

    assert pipeline.tried[:2] == [2200, 1100]
    assert all(1700 < r <= 1900 for r in runs), runs


async def test_a_load_that_fails_one_of_its_runs_is_not_the_figure() -> None:
    """The highest load is kept up with once, then fails a confirming run: the figure is the
    next lower load kept up with in every run."""
    pipeline = Pipeline(capacity=2600, flaky=frozenset({7}))

    runs = await sustained_ladder(pipeline.trial, estimate=1000, runs=3)

    # Kept: 1,000, 1,500, 2,000, 2,500; not: 3,000, 2,750, 2,625. Trial 7 runs 2,500 again and
    # fails: 2,000 is run twice more.
    assert pipeline.tried[7:] == [2500, 2000, 2000]
    assert len(runs) == 3
    assert all(1900 < r <= 2000 for r in runs)


async def test_no_load_kept_up_with_gives_no_figure() -> None:
    assert await sustained_ladder(Pipeline(capacity=10).trial, estimate=1000, runs=3) == []


async def test_when_no_load_holds_in_every_run_the_ladder_steps_down_by_fifths() -> None:
    """Every load up to 2,600 holds once, but only loads up to 700 hold again: none of the
    ladder's loads is confirmed, so it goes on below the lowest (1,000): 800, then 640."""

    class Fading(Pipeline):
        async def trial(self, rate: float) -> Trial:
            again = rate in self.tried
            result = await super().trial(rate)
            if again and rate > 700:
                return Trial(result.posted, drain_s=30.0, dead_letters=0)
            return result

    pipeline = Fading(capacity=2600)

    runs = await sustained_ladder(pipeline.trial, estimate=1000, runs=3)

    assert pipeline.tried[-5:] == [800, 800, 640, 640, 640]
    assert len(runs) == 3
    assert all(600 < r <= 640 for r in runs)
