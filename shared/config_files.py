"""Loading business-rule YAML files (scoring rules, routing) into validated pydantic models.

These files may come from outside (a candidate rules file posted to score's simulate endpoint),
so loading is bounded: a document is at most `MAX_DOCUMENT_CHARS` long and `MAX_DEPTH` deep,
and YAML anchors and aliases are refused. An alias makes several places of the document one
object, which validation then walks once per place: a few lines of aliases of aliases ("billion
laughs") would run for hours. Rule files never need them: write the value out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml
import yaml.composer
from pydantic import BaseModel, ValidationError
from yaml._yaml import CParser
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

M = TypeVar("M", bound=BaseModel)

MAX_DOCUMENT_CHARS = 1_000_000
"""A rules or routing file is a few kilobytes; the same bound as the simulate endpoint's body."""
MAX_DEPTH = 64
"""How deeply mappings and lists may nest (the default rules file nests 6 deep)."""


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
    name `source` where they would name the file. CPU work bounded by the document's size
    (see the module doc); an async caller runs it in a thread."""
    return parse_yaml_document(text, model, source=source, error=error)[1]


def parse_yaml_document(
    text: str,
    model: type[M],
    *,
    source: str,
    error: type[ValueError],
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], M]:
    """`parse_yaml_model`, also returning the document as written (a mapping, as YAML gave
    it): what a versioned configuration stores (`shared.config_versions`). A document that is
    not a mapping is refused by `model`'s validation, with the same message. `defaults`: top-
    level keys the document gets where it has none (a draft's version label), added after the
    text is read, so the lines errors name stay the text's own."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise error(
            f"{source}: {len(text)} characters; a rules or routing file is at most "
            f"{MAX_DOCUMENT_CHARS}"
        )
    loader = _PlainLoader(text)
    try:
        root = loader.get_single_node()
        document = loader.construct_document(root) if root is not None else None
    except _Refused as refused:
        raise error(f"{source}: {refused}") from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: a scalar YAML resolves to a type it cannot build, e.g. an int of
        # more than 4300 digits.
        raise error(f"{source}: {exc}") from None
    finally:
        loader.dispose()
    if defaults and isinstance(document, dict):
        document = {**defaults, **document}
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            _located(root, e["loc"], e["msg"]) for e in exc.errors(include_url=False)
        )
        raise error(f"{source}: {problems}") from None
    assert isinstance(document, dict)  # a model validates only a mapping
    return document, parsed


def document_yaml(document: Mapping[str, Any]) -> str:
    """A stored document (JSON: a versioned configuration's) as YAML text that
    `parse_yaml_document` reads back to the same document: keys in their order, block style,
    Unicode kept. Comments of the file it may have come from are not part of the document."""
    return yaml.dump(
        dict(document),
        Dumper=_PlainDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


class _PlainDumper(yaml.SafeDumper):
    """Writes plain data without anchors: the loader here refuses them (module doc), and a
    document that repeats a value (two territories with the same countries) must read back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class _Refused(Exception):
    """A document this loader will not build; the message is the line, field and reason."""


class _PlainLoader(yaml.composer.Composer, CParser, SafeConstructor, Resolver):
    """`yaml.CSafeLoader` (libyaml scans and parses: 3x faster than pure Python on a large file)
    composed in Python, so that it can refuse anchors and aliases and nesting past `MAX_DEPTH`,
    naming the line and the dotted field where it stopped."""

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._path: list[str] = []
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # `index`: a list item's position, a mapping value's key node, None for a key or the root.
        part = index.value if isinstance(index, yaml.ScalarNode) else index
        if part is not None:
            self._path.append(str(part))
        self._depth += 1
        try:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                self._refuse(
                    event, "anchors and aliases (&name, *name) are not allowed; write the value out"
                )
            if self._depth > MAX_DEPTH:
                self._refuse(event, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if part is not None:
                self._path.pop()

    def _refuse(self, event: yaml.Event | None, message: str) -> NoReturn:
        mark = event.start_mark if event is not None else None
        line = int(mark.line) + 1 if mark is not None else None
        raise _Refused(_where(line, ".".join(self._path), message))


def _located(root: yaml.Node | None, loc: Sequence[int | str], message: str) -> str:
    return _where(_line_of(root, loc), ".".join(str(part) for part in loc), message)


def _where(line: int | None, dotted: str, message: str) -> str:
    """The problem as "line 14: rules.2.points: message", leaving out what is unknown."""
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
