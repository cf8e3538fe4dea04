"""Rule-file errors point at the line to fix, for people who are not programmers."""

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict


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
