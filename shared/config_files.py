"""Loading business-rule YAML files (scoring rules, routing) into validated pydantic models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A business-rule file that cannot be used; the message names the file, line and field.
    Each kind of file has its own subclass; the service shell reports any of them in one line."""


def load_yaml_model(path: Path, model: type[M], *, error: type[ValueError]) -> M:
    """Parse and validate; raise `error` naming the file and, for each failing field, its line
    and dotted location: "rules.yaml: line 14: rules.2.points: Input should be ...".

    The people editing these files are not programmers: every problem is reported at once, each
    with the line to look at.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{path}: {exc}") from None
    return parse_yaml_model(text, model, source=str(path), error=error)


def parse_yaml_model(text: str, model: type[M], *, source: str, error: type[ValueError]) -> M:
    """`load_yaml_model` for a document already in hand (e.g. an HTTP request body); errors
    name `source` where they would name the file."""
    try:
        document = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise error(f"{source}: {exc}") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            _located(root, e["loc"], e["msg"]) for e in exc.errors(include_url=False)
        )
        raise error(f"{source}: {problems}") from None


def _located(root: yaml.Node | None, loc: Sequence[int | str], message: str) -> str:
    dotted = ".".join(str(part) for part in loc)
    line = _line_of(root, loc)
    where = f"line {line}: " if line is not None else ""
    return f"{where}{dotted}: {message}" if dotted else f"{where}{message}"


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node `loc` reaches. Parts that are not in the document
    (pydantic's union member names, a missing field) are skipped: the error is then reported at
    the enclosing node, which is where the fix goes."""
    if node is None:
        return None
    for part in loc:
        child = _child(node, part)
        if child is not None:
            node = child
    return int(node.start_mark.line) + 1


def _child(node: yaml.Node, part: int | str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None
