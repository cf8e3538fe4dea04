"""Rule-file errors point at the line to fix, for people who are not programmers; a stored
document (a versioned configuration's JSON) is shown as YAML that reads back to the same document
and model, for both default files."""

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from services.router.routing_config import DEFAULT_ROUTING_FILE, RoutingConfig, RoutingFileError
from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, RulesFileError
from shared.config_files import ConfigFileError, document_yaml, parse_yaml_document


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    points: int


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    items: list[Item]


class DocumentError(ValueError):
    pass


def load(tmp_path: Path, text: str) -> Document:
    from shared.config_files import load_yaml_model

    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_yaml_model(path, Document, error=DocumentError)


def test_each_problem_names_its_line_and_field(tmp_path: Path) -> None:
    text = "version: '1'\nitems:\n  - name: a\n    points: 3\n  - name: b\n    points: lots\n  - {name: c, colour: red, points: 1}\n"
    with pytest.raises(DocumentError) as refused:
        load(tmp_path, text)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'rules.yaml'}: ")
    assert "line 6: items.1.points: Input should be a valid integer" in message
    assert "line 7: items.2.colour: Extra inputs are not permitted" in message


def test_a_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"line 3: items\.0\.points: Field required"):
        load(tmp_path, "version: '1'\nitems:\n  - name: a\n")


def test_valid_document_loads(tmp_path: Path) -> None:
    assert load(tmp_path, "version: '1'\nitems: [{name: a, points: 1}]\n").items[0].points == 1


# ---- documents as written, and back to YAML ----------------------------------------------------

DEFAULT_FILES = [
    pytest.param(DEFAULT_RULES_FILE, RuleSet, RulesFileError, id="score-rules"),
    pytest.param(DEFAULT_ROUTING_FILE, RoutingConfig, RoutingFileError, id="router-routing"),
]


def read_back(text: str, model: type[BaseModel], error: type[ValueError]) -> Any:
    return parse_yaml_document(text, model, source="shown", error=error)


@pytest.mark.parametrize(("path", "model", "error"), DEFAULT_FILES)
def test_parse_yaml_document_returns_the_document_as_written_and_the_model(
    path: Path, model: type[BaseModel], error: type[ConfigFileError]
) -> None:
    text = path.read_text()
    document, parsed = parse_yaml_document(text, model, source=str(path), error=error)
    assert document == yaml.safe_load(text)  # as written: no defaults filled in, no aliases
    assert list(document) == list(yaml.safe_load(text))  # in the file's order
    assert parsed == model.model_validate(document)


@pytest.mark.parametrize(("path", "model", "error"), DEFAULT_FILES)
def test_document_yaml_reads_back_to_the_same_document_and_model(
    path: Path, model: type[BaseModel], error: type[ConfigFileError]
) -> None:
    document, parsed = read_back(path.read_text(), model, error)
    shown = document_yaml(document)
    assert read_back(shown, model, error) == (document, parsed)
    assert shown.startswith("version: ")  # keys in the document's order, not sorted
    assert document_yaml(document) == shown  # the same document, the same text


@pytest.mark.parametrize(("path", "model", "error"), DEFAULT_FILES)
def test_document_yaml_of_a_stored_json_document_reads_back_to_it_and_to_the_same_model(
    path: Path, model: type[BaseModel], error: type[ConfigFileError]
) -> None:
    """What a versioned configuration stores is the document after a JSON round trip: dates
    (a rep's out of office) are strings there, and must stay strings in the YAML shown."""
    document, parsed = read_back(path.read_text(), model, error)
    stored = orjson.loads(orjson.dumps(document))
    shown = document_yaml(stored)
    assert read_back(shown, model, error) == (stored, parsed)
    assert orjson.loads(orjson.dumps(read_back(shown, model, error)[0])) == stored


def test_the_default_routings_json_round_trip_turns_its_dates_into_strings() -> None:
    """The case above is exercised: the routing file has dates, which JSON writes as text."""
    document, _ = read_back(DEFAULT_ROUTING_FILE.read_text(), RoutingConfig, RoutingFileError)
    stored = orjson.loads(orjson.dumps(document))
    assert stored != document
    absences = [o for t in stored["teams"] for r in t["reps"] for o in r.get("out_of_office", [])]
    assert absences
    assert all(isinstance(a["from"], str) for a in absences)
    shown = document_yaml(stored)
    assert f"from: '{absences[0]['from']}'" in shown  # quoted: it reads back as text


@pytest.mark.parametrize(
    ("path", "model", "error", "repeat"),
    [
        # two regions with the same countries (one list object twice)
        pytest.param(
            DEFAULT_ROUTING_FILE,
            RoutingConfig,
            RoutingFileError,
            lambda d: d["regions"].__setitem__("EUROPE", d["regions"]["EMEA"]),
            id="routing-regions",
        ),
        # two teams' working hours (one mapping object twice)
        pytest.param(
            DEFAULT_ROUTING_FILE,
            RoutingConfig,
            RoutingFileError,
            lambda d: d["teams"][1].__setitem__("working_hours", d["teams"][0]["working_hours"]),
            id="routing-working-hours",
        ),
        # two rules with the same condition
        pytest.param(
            DEFAULT_RULES_FILE,
            RuleSet,
            RulesFileError,
            lambda d: d["rules"][1].__setitem__("when", d["rules"][0]["when"]),
            id="rules-condition",
        ),
    ],
)
def test_a_document_that_repeats_a_value_is_written_out_without_anchors_and_reads_back(
    path: Path,
    model: type[BaseModel],
    error: type[ConfigFileError],
    repeat: Any,
) -> None:
    document, _ = read_back(path.read_text(), model, error)
    repeat(document)
    shown = document_yaml(document)
    assert "&id" not in shown
    assert "*id" not in shown
    assert read_back(shown, model, error) == (document, model.model_validate(document))


class Texts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    texts: list[str]


@pytest.mark.parametrize(
    "text",
    [
        "NO",  # Norway: a boolean in YAML 1.1 if written plain
        "yes",  # a boolean too
        "08:30",  # a time of day
        "1:30",  # a base-60 number in YAML 1.1
        "2026-12-21",  # a date
        "1.0",  # a number
        "0x1F",  # a hexadecimal number
        "null",  # null
        "~",  # null too
        "",  # empty
        "# not a comment",  # a comment sign
        "- not a list",  # a list sign
        "a: b",  # a mapping sign
        "&anchor",  # an anchor sign
        "*alias",  # an alias sign
        "Grâce Höpper — 東京",  # Unicode, kept as written
        "line one\nline two",  # several lines
        " padded ",  # surrounding spaces
    ],
)
def test_a_text_that_looks_like_something_else_reads_back_as_the_same_text(text: str) -> None:
    document = {"version": "1", "texts": [text, text]}
    shown = document_yaml(document)
    assert read_back(shown, Texts, DocumentError) == (document, Texts.model_validate(document))


def test_document_yaml_keeps_unicode_as_written() -> None:
    document = {"version": "1", "texts": ["Grâce Höpper", "東京"]}
    shown = document_yaml(document)
    assert "Grâce Höpper" in shown
    assert "東京" in shown
    assert "\\u" not in shown


def test_document_yaml_does_not_change_the_document_it_is_given() -> None:
    document, _ = read_back(DEFAULT_ROUTING_FILE.read_text(), RoutingConfig, RoutingFileError)
    before = copy.deepcopy(document)
    document_yaml(document)
    assert document == before
