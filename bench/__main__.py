"""`python -m bench [section ...]`: run the benchmark sections, print one table, write JSON.

A section is a module `bench/<name>.py` with `async def run(infra: BenchInfra) -> list[Figure]`.
Sections run one after another (never in parallel: they would measure each other) against one
broker and PostgreSQL, each on its own topics and database.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.figures import Figure, render_table, write_json
from bench.infra import BenchInfra, local_infrastructure

SECTIONS: tuple[str, ...] = (
    "broker",
    "enrich",
    "score",
    "ingest",
    "pipeline",
    "scale",
    "runner",
    "router",
    "learning",
    "console",
    "sync",
)
DEFAULT_OUTPUT = Path(".bench/results.json")

Section = Callable[[BenchInfra], Awaitable[list[Figure]]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", help=f"default: all of {', '.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUTPUT, help="where to write JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    chosen = args.sections or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    figures = asyncio.run(_run(chosen))
    print()
    print(render_table(figures))
    write_json(figures, args.json, machine=_machine())
    print(f"\nwritten to {args.json}")
    return 0


async def _run(sections: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    with local_infrastructure() as infra:
        for name in sections:
            section: Section = importlib.import_module(f"bench.{name}").run
            started = time.monotonic()
            print(f"[bench] {name} ...", flush=True)
            figures.extend(await section(infra))
            print(f"[bench] {name} done in {time.monotonic() - started:.0f}s", flush=True)
    return figures


def _machine() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    raise SystemExit(main())
