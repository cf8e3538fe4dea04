"""Sending the queue: one owner per destination, its lanes in parallel, each lane in order.

**Leases.** A companion (`Deliveries.round`, every third of `lease_s`) takes or renews, in one
statement, the lease of every configured destination that is free, expired or already this
replica's (`repository.take_leases`; the database's clock decides). This replica then runs the
destinations it holds (`DestinationSender`) and stops those it lost; at shutdown it releases its
leases, so another replica takes over at its next round rather than after `lease_s`. A lease
counts as held here until 80% of `lease_s` after the statement that took it was sent, so a
replica cut off from the database stops sending before another one may start; the rare overlap
(a stalled process) sends some events twice, which their idempotency keys absorb.

**Waking.** The statement that queues rows also notifies which lanes it queued for
(`repository.enqueue`, PostgreSQL NOTIFY, delivered at its commit); this replica listens on a
connection of its own and wakes those lanes of the destinations it holds, so a decision goes out
as soon as it is stored. A lane also looks every `idle_poll_s` (a notification lost while the
listening connection was being opened again, or a retry falling due).

**Lanes.** A destination's queue is split into `concurrency` lanes by lead (`events.lane_of`).
A lane reads its head (`repository.lane_head`, up to `batch_size` rows), sends the rows whose
next attempt is due as one request, and only then looks at the next: the next request of a lane
waits until the previous one was delivered or dead-lettered, so a lead's events arrive in the
order they were queued. A lane whose head waits for a retry waits with it. Lanes with nothing to
send look again every `idle_poll_s`.

**Per destination, in the holder's process**: its connections (`http_client`), its rate
(`rate_limit.TokenBucket`, shared by its lanes: exact, since only the holder sends), and its
pause: a 429 or 503 with `Retry-After` stops every lane until then (capped at
`retry_after_cap_s`). Destinations share nothing: a slow or unreachable one holds up only its
own lanes, never another destination nor the consumer (which only queues).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from services.sync import repository
from services.sync.config import SyncSettings
from services.sync.destinations import Destination
from services.sync.events import type_of
from services.sync.http_client import Answer, DestinationClient
from services.sync.metrics import (
    DEAD_LETTERED,
    DELIVERED,
    FAILED,
    LAST_ERROR_TIME,
    LATENCY,
    OLDEST_QUEUED_SECONDS,
    PAUSED,
    QUEUED,
    RETRYING,
)
from services.sync.rate_limit import TokenBucket
from services.sync.repository import QUEUED_CHANNEL, Queued
from services.sync.retries import (
    PAUSING_STATUSES,
    Failure,
    backoff_s,
    excerpt,
    retry_after_s,
    verdict,
)
from services.sync.webhooks import Envelope, webhook_request
from shared.db import listen, unit_of_work

log = logging.getLogger(__name__)

LEASE_TRUSTED_SHARE = 0.8
HEAD_RECHECK_S = 1.0  # a lane waiting for its head's retry looks again at least this often
LANE_FAILURE_WAIT_S = 1.0  # a lane whose database statement failed tries again after this


@dataclass
class Lease:
    """Whether this replica may send to a destination: until `valid_until` (monotonic)."""

    valid_until: float = 0.0

    def held(self) -> bool:
        return time.monotonic() < self.valid_until


class DestinationSender:
    """One destination's lanes, connections, rate and pause, in the replica holding its lease."""

    def __init__(
        self,
        destination: Destination,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: SyncSettings,
        lease: Lease,
    ) -> None:
        config = destination.config
        self.destination = destination
        self._sessions = sessions
        self._settings = settings
        self._lease = lease
        self._client = DestinationClient(connections=config.concurrency, timeout_s=config.timeout_s)
        self._signer = Webhook(destination.secret.get_secret_value())
        self._headers = {
            name: value.get_secret_value() for name, value in destination.headers.items()
        }
        self._bucket = TokenBucket(config.rate_limit_per_s) if config.rate_limit_per_s else None
        self._paused_until = 0.0
        self._draw = random.Random()
        self._lanes: list[asyncio.Task[None]] = []
        self._wakes = [asyncio.Event() for _ in range(config.concurrency)]

    def wake(self, lane: int) -> None:
        """Rows were queued for `lane` (a notification): it looks at once, not at its next poll."""
        if 0 <= lane < len(self._wakes):
            self._wakes[lane].set()

    def start(self) -> None:
        name = self.destination.name
        self._lanes = [
            asyncio.create_task(self._run_lane(lane), name=f"sync {name} lane {lane}")
            for lane in range(self.destination.config.concurrency)
        ]

    async def stop(self) -> None:
        for task in self._lanes:
            task.cancel()
        # gather, not `await task` under suppress(CancelledError): a cancellation of the caller
        # itself (the service stopping) must not be swallowed here.
        await asyncio.gather(*self._lanes, return_exceptions=True)
        await self._client.close()

    async def _run_lane(self, lane: int) -> None:
        while True:
            try:
                wait_s = await self.step(lane)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s lane %d failed; again in %.0fs", self.destination.name, lane,
                              LANE_FAILURE_WAIT_S)  # fmt: skip
                wait_s = LANE_FAILURE_WAIT_S
            if wait_s > 0:
                await self._wait(lane, wait_s)

    async def _wait(self, lane: int, wait_s: float) -> None:
        """Wait `wait_s`, or less if rows are queued for the lane meanwhile (`wake`); a wake that
        came while the lane was busy makes it look again at once."""
        wake = self._wakes[lane]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), wait_s)
        wake.clear()

    async def step(self, lane: int) -> float:
        """One request of `lane` if one is due; returns the seconds to wait before the next."""
        idle_s = self._settings.idle_poll_s
        if not self._lease.held():
            return idle_s
        paused_s = self._paused_until - time.monotonic()
        if paused_s > 0:
            return min(paused_s, HEAD_RECHECK_S)
        config = self.destination.config
        async with unit_of_work(self._sessions) as session:
            head = await repository.lane_head(
                session, self.destination.name, lane, config.batch_size
            )
        if not head:
            return idle_s
        now = datetime.now(UTC)
        due = _due_prefix(head, now)
        if not due:
            assert head[0].next_attempt_at is not None
            return min((head[0].next_attempt_at - now).total_seconds(), HEAD_RECHECK_S)
        if self._bucket is not None and (wait_s := self._bucket.take(time.monotonic())) > 0:
            await asyncio.sleep(wait_s)
            # The wait may have been long (many lanes, a low rate): the lease may have gone to
            # another replica, or a Retry-After paused the destination, meanwhile.
            if not self._lease.held() or self._paused_until > time.monotonic():
                return 0.0
        request = webhook_request(
            [Envelope(row.event_id, type_of(row.event_kind), row.event_at, row.data)
             for row in due],
            signer=self._signer,
            now=datetime.now(UTC),
            batched=config.batch_size > 1,
            extra_headers=self._headers,
        )  # fmt: skip
        answer = await self._client.post(config.url, request.body, request.headers)
        await self._settle(due, answer)
        return 0.0

    async def _settle(self, rows: Sequence[Queued], answer: Answer) -> None:
        name = self.destination.name
        config = self.destination.config
        ids = [row.delivery_id for row in rows]
        outcome = verdict(answer.status)
        if outcome == "delivered":
            async with unit_of_work(self._sessions) as session:
                await repository.delivered(session, name, ids)
            at = datetime.now(UTC)
            for row in rows:
                DELIVERED.labels(destination=name, type=type_of(row.event_kind)).inc()
                LATENCY.labels(destination=name).observe(
                    max((at - row.received_at).total_seconds(), 0.0)
                )
            return
        now = datetime.now(UTC)
        failure = Failure(
            answer.status,
            excerpt(answer.body) if answer.body else answer.error or "",
            body_bytes=len(answer.body or b""),
        )
        told_s = retry_after_s(answer.retry_after, now=now)
        if told_s is not None:
            told_s = min(told_s, self._settings.retry_after_cap_s)
            if answer.status in PAUSING_STATUSES:
                self._paused_until = time.monotonic() + told_s
                PAUSED.labels(destination=name).inc()
        attempt = max(row.attempts for row in rows) + 1
        wait_s = (
            told_s
            if told_s is not None
            else backoff_s(attempt, base_s=config.backoff_base_s, cap_s=config.backoff_cap_s,
                           draw=self._draw)
        )  # fmt: skip
        async with unit_of_work(self._sessions) as session:
            # Under the leads' locks, as an erasure: a dead letter this moves is either seen and
            # deleted by an erasure that follows, or never written after one (its row is gone).
            await repository.lock_leads(session, {row.lead_id for row in rows})
            dead = await repository.failed(
                session,
                name,
                ids,
                max_attempts=config.max_attempts,
                rejected=outcome == "rejected",
                status=answer.status,
                error=failure.summary(),
                dead_letter_error=failure.dead_letter_text(events=len(rows)),
                next_attempt_at=now + timedelta(seconds=wait_s),
            )
        cause = str(answer.status) if answer.status is not None else _cause(answer.error)
        FAILED.labels(destination=name, cause=cause).inc()
        LAST_ERROR_TIME.labels(destination=name).set(now.timestamp())
        if dead:
            DEAD_LETTERED.labels(destination=name).inc(dead)
        log.warning(
            "%s: %d event(s) not delivered (%s): %s",
            name,
            len(rows),
            f"{dead} dead-lettered" if dead else f"attempt {attempt}, next in {wait_s:.1f}s",
            failure.summary(),
        )


def _due_prefix(head: Sequence[Queued], now: datetime) -> list[Queued]:
    """The rows at the head of a lane whose next attempt is due (a lane never skips its head)."""
    due = []
    for row in head:
        if row.next_attempt_at is not None and row.next_attempt_at > now:
            break
        due.append(row)
    return due


def _cause(error: str | None) -> str:
    if error and error.startswith("no answer"):
        return "timeout"
    if error and error.startswith("refused"):
        return "refused address"
    return "connection"


class Deliveries:
    """This replica's share of the sending: the leases it holds, and their senders."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: SyncSettings,
    ) -> None:
        self._destinations = {d.name: d for d in destinations}
        self._sessions = sessions
        self._settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases = {name: Lease() for name in self._destinations}
        for name in self._destinations:
            # At 0 from the start: increase() would not see a series born at 1 (the alert).
            DEAD_LETTERED.labels(destination=name)
        self._senders: dict[str, DestinationSender] = {}
        self._listener: asyncpg.Connection | None = None

    async def _listen(self) -> None:
        """Listen for queued rows (`repository.enqueue` notifies), opening the connection
        again if it closed; if it cannot be opened, lanes fall back to polling every
        `idle_poll_s` until the next round tries again."""
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await listen(
                self._settings.database, QUEUED_CHANNEL, self._queued, name="leadflow-sync-listen"
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self._listener = None
            log.warning("not listening for queued deliveries (%s): lanes poll every %.1fs",
                        type(exc).__name__, self._settings.idle_poll_s)  # fmt: skip

    def _queued(self, payload: str) -> None:
        """A notification: wake the lanes that rows were queued for, where this replica sends."""
        try:
            lanes = orjson.loads(payload)  # destination -> a bit per lane (`queued_lanes`)
        except orjson.JSONDecodeError:
            return
        for name, bits in lanes.items():
            sender = self._senders.get(name)
            if sender is not None:
                for lane in range(bits.bit_length()):
                    if bits >> lane & 1:
                        sender.wake(lane)

    async def round(self) -> float:
        """Take or renew the leases, start and stop senders, refresh the gauges; returns the
        wait before the next round."""
        lease_s = self._settings.lease_s
        if not self._destinations:
            return lease_s
        await self._listen()
        asked_at = time.monotonic()
        async with unit_of_work(self._sessions) as session:
            held = await repository.take_leases(
                session, sorted(self._destinations), holder=self.holder, lease_s=lease_s
            )
        for name in held:  # every lease first: a takeover that fails must not leave one stale
            self._leases[name].valid_until = asked_at + lease_s * LEASE_TRUSTED_SHARE
        for name, destination in self._destinations.items():
            if name in held:
                if name not in self._senders:
                    try:
                        await self._take_over(destination)
                    except Exception:  # this destination again next round; the others go on
                        log.exception("%s: taking over failed; again next round", name)
            elif name in self._senders:
                log.info("%s: lease lost to another replica; stopped sending", name)
                self._leases[name].valid_until = 0.0
                await self._senders.pop(name).stop()
                _forget_gauges(name)
        await self._refresh_gauges(held)
        return lease_s / 3

    async def _take_over(self, destination: Destination) -> None:
        async with unit_of_work(self._sessions) as session:
            moved = await repository.relane(
                session, destination.name, destination.config.concurrency
            )
        if moved:
            log.info("%s: %d queued events moved to new lanes (concurrency changed)",
                     destination.name, moved)  # fmt: skip
        sender = DestinationSender(
            destination,
            sessions=self._sessions,
            settings=self._settings,
            lease=self._leases[destination.name],
        )
        sender.start()
        self._senders[destination.name] = sender
        log.info("%s: sending (%s, %d lanes)", destination.name, destination.origin,
                 destination.config.concurrency)  # fmt: skip

    async def _refresh_gauges(self, held: set[str]) -> None:
        if not held:
            return
        async with unit_of_work(self._sessions) as session:
            figures = await repository.health(session, sorted(held))
        now = datetime.now(UTC)
        for figure in figures:
            if figure.name not in held:
                continue
            QUEUED.labels(destination=figure.name).set(figure.queued)
            RETRYING.labels(destination=figure.name).set(figure.retrying)
            oldest = figure.oldest_queued_at
            age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
            OLDEST_QUEUED_SECONDS.labels(destination=figure.name).set(age)

    async def close(self) -> None:
        """Stop every sender and release the leases (best effort: a database away leaves them
        to run out)."""
        for sender in self._senders.values():
            await sender.stop()
        self._senders.clear()
        if self._listener is not None:
            with contextlib.suppress(Exception):  # shutting down: a broken one is closed anyway
                await self._listener.close()
        try:
            async with unit_of_work(self._sessions) as session:
                await repository.release_leases(session, self.holder)
        except Exception as exc:  # shutting down: the leases run out by themselves
            log.warning("leases not released (%s); they run out in %.0fs",
                        type(exc).__name__, self._settings.lease_s)  # fmt: skip


def _forget_gauges(name: str) -> None:
    for gauge in (QUEUED, RETRYING, OLDEST_QUEUED_SECONDS):
        with contextlib.suppress(KeyError):
            gauge.remove(name)
