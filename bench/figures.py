"""What a benchmark section reports, and how the report is printed and saved."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured number. `goal` is the target as text (">= 20000"); `met` says whether the
    measurement reached it (None when there is no goal). `runs`: each run's own value, when the
    figure is made of several runs (printed beside it, so a bad run shows)."""

    section: str
    name: str
    value: float
    unit: str
    goal: str | None = None
    met: bool | None = None
    runs: Sequence[float] = ()


def at_least(
    section: str, name: str, value: float, unit: str, goal: float, runs: Sequence[float] = ()
) -> Figure:
    return Figure(section, name, value, unit, goal=f">= {goal:g}", met=value >= goal, runs=runs)


def at_most(
    section: str, name: str, value: float, unit: str, goal: float, runs: Sequence[float] = ()
) -> Figure:
    return Figure(section, name, value, unit, goal=f"<= {goal:g}", met=value <= goal, runs=runs)


def median(values: Sequence[float]) -> float:
    """The figure of several runs: the median, which one noisy run cannot move."""
    return float(statistics.median(values))


def render_table(figures: Sequence[Figure]) -> str:
    rows = [("section", "figure", "value", "unit", "goal", "", "runs")]
    for figure in figures:
        verdict = "" if figure.met is None else ("ok" if figure.met else "MISSED")
        rows.append(
            (
                figure.section,
                figure.name,
                _number(figure.value),
                figure.unit,
                figure.goal or "",
                verdict,
                " / ".join(_number(run) for run in figure.runs),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column == 2 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(figures: Sequence[Figure], path: Path, *, machine: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine, "figures": [asdict(figure) for figure in figures]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def _number(value: float) -> str:
    if value != value:  # nan: nothing was measured
        return "-"
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}"
