"""What changed between two versions of a configuration, line by line: a unified diff of
their YAML (as the owning service renders each stored document, so the same content always
reads the same), for the versions page. Pure."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

LineKind = Literal["added", "removed", "same", "hunk"]
CONTEXT = 3
"""Unchanged lines shown around each change."""


@dataclass(frozen=True)
class DiffLine:
    kind: LineKind
    text: str


def yaml_diff(before: str, after: str) -> list[DiffLine]:
    """The lines of `after` against `before`: hunks (`@@ -12,4 +12,5 @@`) of removed, added and
    unchanged lines around each change. Empty when the two say the same."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=CONTEXT)
    found: list[DiffLine] = []
    for line in lines:
        if not found and not line.startswith("@@"):
            continue  # the "--- / +++" header (a removed "-- x" line must not be taken for it)
        if line.startswith("@@"):
            found.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            found.append(DiffLine("added", line[1:]))
        elif line.startswith("-"):
            found.append(DiffLine("removed", line[1:]))
        else:
            found.append(DiffLine("same", line[1:]))
    return found
