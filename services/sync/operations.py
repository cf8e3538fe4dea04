"""The operator commands: `destinations` (the health of each destination) and `replay` (dead
letters back in the queue).

Neither shows a secret or a URL's path or query (they may carry a token): a destination is
named, with its URL's scheme, host and port. `last error` is the status and the start of the
destination's answer as stored (`retries.excerpt`: printable, bounded, emails and phone numbers
redacted).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta

from services.sync import repository
from services.sync.config import SyncSettings
from services.sync.destinations import load_destinations
from shared.db import unit_of_work
from shared.operator import OperatorError, Report, table
from shared.resources import Resources


async def destinations_report(
    resources: Resources[SyncSettings], args: argparse.Namespace
) -> Report:
    configured = {
        d.name: d
        for d in load_destinations(
            resources.settings.destinations_file, os.environ, resolve=None, with_secrets=False
        )
    }
    async with resources.database()() as session:
        figures = await repository.health(session, sorted(configured))
    now = datetime.now(UTC)
    data = []
    for figure in figures:
        destination = configured.get(figure.name)
        oldest = figure.oldest_queued_at
        leased = figure.lease_until is not None and figure.lease_until > now
        data.append(
            {
                "name": figure.name,
                "origin": destination.origin if destination else None,
                "configured": destination is not None,
                "queued": figure.queued,
                "oldest_queued_s": round((now - oldest).total_seconds(), 1) if oldest else None,
                "retrying": figure.retrying,
                "dead_letters": figure.dead_letters,
                "delivered_total": figure.delivered_total,
                "last_delivered_at": figure.last_delivered_at,
                "last_error": figure.last_error,
                "last_error_at": figure.last_error_at,
                "sending_replica": figure.leased_by if leased else None,
            }
        )
    if not data:
        return Report(text=f"no destinations in {resources.settings.destinations_file}", data=[])
    rows = [
        [
            figure.name + ("" if figure.name in configured else " (not in the file)"),
            figure.queued,
            _age(now - figure.oldest_queued_at if figure.oldest_queued_at else None),
            figure.retrying,
            figure.dead_letters,
            figure.delivered_total,
            _time(figure.last_delivered_at),
            _error(figure.last_error, figure.last_error_at),
        ]
        for figure in figures
    ]
    headers = ["destination", "queued", "oldest", "retrying", "dead letters", "delivered",
               "last delivered", "last error"]  # fmt: skip
    return Report(text=table(headers, rows), data=data)


async def replay(resources: Resources[SyncSettings], args: argparse.Namespace) -> Report:
    destinations = {
        d.name: d
        for d in load_destinations(
            resources.settings.destinations_file, os.environ, resolve=None, with_secrets=False
        )
    }
    destination = destinations.get(args.destination)
    if destination is None:
        known = ", ".join(sorted(destinations)) or "none"
        raise OperatorError(f"no destination {args.destination!r} in the file (known: {known})")
    async with unit_of_work(resources.database()) as session:
        letters = await repository.dead_letters(session, destination.name, args.event_id)
        # Under the leads' locks, as an erasure: a letter erased meanwhile is gone when moved.
        await repository.lock_leads(session, {letter.lead_id for letter in letters})
        queued = await repository.requeue(
            session, destination.name, letters, lanes=destination.config.concurrency
        )
    if not queued:
        which = f"of event {args.event_id}" if args.event_id else ""
        raise OperatorError(f"no dead letters {which} for {destination.name}".replace("  ", " "))
    return Report(
        text=f"{queued} dead letter(s) of {destination.name} queued again (after what is queued "
        "already; receivers order a lead's routing events by their sequence)",
        data={"destination": destination.name, "queued": queued},
    )


def _age(age: timedelta | None) -> str | None:
    if age is None:
        return None
    seconds = age.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _time(at: datetime | None) -> str | None:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else None


def _error(error: str | None, at: datetime | None) -> str | None:
    if error is None:
        return None
    short = error if len(error) <= 60 else error[:59] + "…"
    return f"{_time(at)} {short}"
