"""Every consuming service's command line offers the consumer runner's operator commands
(`reset-offsets`, `replay-dead-letters`: shared.consumer.operations); the HTTP-only one does not."""

from __future__ import annotations

from typing import Any

import pytest

from services.enrich.__main__ import SERVICE as ENRICH
from services.ingest.__main__ import SERVICE as INGEST
from services.router.__main__ import SERVICE as ROUTER
from services.score.__main__ import SERVICE as SCORE
from shared.service import Service

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", [ENRICH, SCORE, ROUTER], ids=lambda s: s.name)
@pytest.mark.parametrize("command", ["reset-offsets", "replay-dead-letters"])
def test_a_consuming_service_offers_the_runner_commands(
    service: Service[Any], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        service.main([command, "--help"])
    assert exited.value.code == 0
    assert "--topic" in capsys.readouterr().out


def test_an_http_only_service_has_no_consumer_to_reset() -> None:
    with pytest.raises(SystemExit) as exited:
        INGEST.main(["reset-offsets", "--topic", "events.raw", "--to", "earliest"])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("latest", id="not-a-choice"),  # only the documented two forms
        pytest.param("-1", id="negative"),
    ],
)
def test_reset_offsets_wants_earliest_or_an_offset(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        SCORE.main(["reset-offsets", "--topic", "events.enriched", "--to", target])
    assert exited.value.code == 2
    assert "--to" in capsys.readouterr().err
