"""The health page's figures from a service's Prometheus text: totals over every label, a
metric a service lacks counts 0, and throughput is the change between two readings."""

from __future__ import annotations

import pytest

from services.console.health import Figures, ServiceHealth, figures_of

SCORE_METRICS = """\
# HELP leadflow_messages_in_total Messages consumed and handled
# TYPE leadflow_messages_in_total counter
leadflow_messages_in_total{service="score",topic="events.enriched"} 1200.0
leadflow_messages_in_total{service="score",topic="crm.feedback"} 30.0
# HELP leadflow_consumer_lag Messages behind the partition's high watermark
# TYPE leadflow_consumer_lag gauge
leadflow_consumer_lag{partition="0",service="score",topic="events.enriched"} 5.0
leadflow_consumer_lag{partition="1",service="score",topic="events.enriched"} 7.0
# HELP leadflow_dead_letters_total Messages sent to a dead-letter topic
# TYPE leadflow_dead_letters_total counter
leadflow_dead_letters_total{service="score",topic="events.enriched"} 2.0
# HELP leadflow_transient_retries_total Batches retried after a transient failure
# TYPE leadflow_transient_retries_total counter
leadflow_transient_retries_total{cause="database",service="score"} 1.0
"""


def test_figures_are_totals_over_every_label() -> None:
    figures = figures_of(SCORE_METRICS, read_at=10.0)
    assert figures == Figures(read_at=10.0, handled=1230.0, lag=12.0, dead_letters=2.0, retries=1.0)


def test_a_service_without_a_metric_counts_zero() -> None:
    assert figures_of("", read_at=1.0) == Figures(1.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        # 300 more messages in 15 s
        (Figures(0.0, 1000.0, 0, 0, 0), Figures(15.0, 1300.0, 0, 0, 0), 20.0),
        # a restarted service's counters start again from 0: no negative throughput
        (Figures(0.0, 1000.0, 0, 0, 0), Figures(15.0, 10.0, 0, 0, 0), 0.0),
        # one reading only: nothing to compare
        (None, Figures(15.0, 10.0, 0, 0, 0), None),
    ],
)
def test_throughput_is_the_change_between_two_readings(
    before: Figures | None, now: Figures, expected: float | None
) -> None:
    health = ServiceHealth("score", up=True, problem=None, now=now, before=before)
    assert health.per_second == expected
