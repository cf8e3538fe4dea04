"""The published JSON Schemas (shared/contracts/schemas/) match the models and accept every
example; what a model refuses, the routing schema refuses too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.contracts.schemas import render, schema_file
from shared.topics import ALL_TOPICS, ROUTING_SDR, Topic

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_the_published_schema_is_the_model_schema(topic: Topic) -> None:
    assert schema_file(topic).read_text() == render(topic), (
        "stale schema: run `python -m shared.contracts.schemas`"
    )


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_example_is_valid_against_the_published_schema(topic: Topic) -> None:
    schema = json.loads(schema_file(topic).read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)

    for example in json.loads(topic.examples_file.read_text()):
        assert list(validator.iter_errors(example)) == []


def sdr_example() -> dict[str, Any]:
    return dict(json.loads(ROUTING_SDR.examples_file.read_text())[0])


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"owner": None}, id="sdr-without-owner-or-queue"),
        pytest.param({"queue": "sdr-unassigned"}, id="sdr-with-owner-and-queue"),
        pytest.param({"route": "nurture", "owner": None, "track": None}, id="nurture-no-track"),
        pytest.param({"unexpected": 1}, id="unknown-field"),
        pytest.param({"speed_to_lead_ms": -1}, id="negative-speed"),
    ],
)
def test_the_routing_schema_refuses_what_the_model_refuses(change: dict[str, Any]) -> None:
    schema = json.loads(schema_file(ROUTING_SDR).read_text())

    assert list(Draft202012Validator(schema).iter_errors({**sdr_example(), **change}))
