"""When the SLA timer looks again: never more often than its check interval, never later than
a due check (known from the last round) or the earliest a check it has not seen can fall due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.router.sla_timers import Round, next_round_in, shortest_wait_for_new_checks
from tests.unit.builders import routing_config

NOW = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
INTERVAL = timedelta(seconds=15)
HORIZON = timedelta(minutes=5)


def wait(*, next_due: datetime | None, full: bool = False) -> timedelta:
    done = Round(requested=0, full=full, next_due=next_due, horizon=HORIZON)
    return next_round_in(done, now=NOW, interval=INTERVAL)


def test_with_no_open_timer_the_timer_waits_as_long_as_a_new_decision_needs() -> None:
    assert wait(next_due=None) == HORIZON


def test_it_wakes_for_the_earliest_known_check() -> None:
    assert wait(next_due=NOW + timedelta(minutes=2)) == timedelta(minutes=2)


def test_a_known_check_beyond_the_horizon_does_not_stretch_the_wait() -> None:
    assert wait(next_due=NOW + timedelta(hours=3)) == HORIZON


def test_it_never_looks_more_often_than_the_check_interval() -> None:
    assert wait(next_due=NOW + timedelta(seconds=2)) == INTERVAL
    assert wait(next_due=NOW - timedelta(seconds=2)) == INTERVAL  # left by another instance


def test_a_full_round_looks_again_after_one_interval() -> None:
    assert wait(next_due=None, full=True) == INTERVAL


def test_the_horizon_is_the_shortest_sla_window_settle_time_or_recheck() -> None:
    slow_settle = {"default": "general-nurture", "settle": "10m"}
    config = routing_config(nurture=slow_settle)  # A1 5 min, grade A 1 h, default 4 h
    assert shortest_wait_for_new_checks(config, recheck=timedelta(hours=1)) == timedelta(minutes=5)
    assert shortest_wait_for_new_checks(config, recheck=timedelta(minutes=2)) == timedelta(
        minutes=2
    )
    only_default = routing_config(sla={"default": "4h"}, nurture=slow_settle)
    assert shortest_wait_for_new_checks(only_default, recheck=timedelta(hours=8)) == timedelta(
        minutes=10
    )
    # a nurture decision made after the round is released its settle time later (default 30 s)
    assert shortest_wait_for_new_checks(routing_config(), recheck=timedelta(hours=1)) == timedelta(
        seconds=30
    )
