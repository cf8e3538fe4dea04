"""Operator commands: what a service offers an operator beside `run` and `migrate`
(`python -m services.score explain <email>`, `python -m services.enrich unmerge <id>`, ...).

A service registers each command with the shell (`shared.service.Service.commands`): its name,
its one-line help (listed by `--help`), its arguments, and a coroutine that returns a `Report`.
The shell prints the report for people (tables, emails next to lead ids) or, with `--json`, its
data as JSON for scripts; an `OperatorError` is one line on stderr and a non-zero exit, never a
traceback. Commands get the same `Resources` as the service's start-up hook (settings, the
database unless `needs_database` is false, the command sender).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from shared.resources import Resources
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class Report:
    """What a command found or did: `text` for people, `data` (JSON-able) for `--json`."""

    text: str
    data: Any
    exit_code: int = 0


class OperatorError(Exception):
    """A command that cannot do what was asked: `str()` is the one line shown to the operator."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class OperatorCommand(Generic[S]):
    """A sub-command of `python -m services.<name>`."""

    name: str
    help: str
    run: Callable[[Resources[S], argparse.Namespace], Awaitable[Report]]
    arguments: Callable[[argparse.ArgumentParser], object] = field(default=lambda _: None)
    needs_database: bool = True


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows under their headers, each column as wide as its widest cell ("-" for None)."""
    cells = [[str(h) for h in headers]] + [
        ["-" if value is None else str(value) for value in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
