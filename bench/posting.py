"""Posting a load of Segment `/v1/batch` calls to ingest, and what ingest answered.

Open loop: batches are due on a fixed schedule and a slow answer does not slow the schedule, up
to IN_FLIGHT requests at once (a site has many browsers); beyond that the sender waits, and a
batch sent more than LATE_LIMIT_S after it was due is late. A load is kept up with only when
every batch due was sent on time and acknowledged: a refused, failed, late or unsent batch is
a load ingest did not take at that pace, whatever the pipeline did with the rest.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

BATCH_SIZE = 50
IN_FLIGHT = 8
LATE_LIMIT_S = 1.0


@dataclass
class Posted:
    """What one load sent and what ingest answered. Counts are of batches, but `acknowledged`
    (events)."""

    rate: float | None  # events/s scheduled; None: as fast as ingest answers
    seconds: float
    scheduled: int = 0  # batches due within the load (0 at full load)
    sent: int = 0
    late: int = 0
    refused: int = 0  # answered, not with 200
    failed: int = 0  # no answer (connection error, timeout)
    acknowledged: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def unsent(self) -> int:
        return max(self.scheduled - self.sent, 0)

    @property
    def achieved(self) -> float:
        """Events/s ingest acknowledged over the load."""
        return self.acknowledged / self.seconds

    def faults(self) -> list[str]:
        """Why the load was not taken at its pace (empty: it was)."""
        counts = {
            "refused": self.refused,
            "failed": self.failed,
            "late": self.late,
            "unsent": self.unsent,
        }
        faults = [f"{n} {what}" for what, n in counts.items() if n]
        if self.statuses:
            faults.append(f"statuses {self.statuses}")
        return faults


async def post(
    *, port: int, write_key: str, bodies: Iterator[bytes], rate: float | None, seconds: float
) -> Posted:
    """Post `bodies` (batches of BATCH_SIZE events) at `rate` events/s for `seconds`; return
    once every request sent has its answer."""
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    posted = Posted(rate=rate, seconds=seconds)
    interval = BATCH_SIZE / rate if rate else 0.0
    posted.scheduled = math.ceil(seconds / interval) if rate else 0
    slots = asyncio.Semaphore(IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits
    ) as client:

        async def send(body: bytes) -> None:
            try:
                response = await client.post("/v1/batch", content=body, headers=headers)
                if response.status_code == 200:
                    posted.acknowledged += BATCH_SIZE
                else:
                    posted.refused += 1
                    code = response.status_code
                    posted.statuses[code] = posted.statuses.get(code, 0) + 1
            except httpx.HTTPError:
                posted.failed += 1
            finally:
                slots.release()

        started = time.monotonic()
        for n, body in enumerate(bodies):
            due = started + n * interval
            if rate is None and time.monotonic() - started >= seconds:
                break
            if rate is not None and (
                n >= posted.scheduled or time.monotonic() > due + 2 * LATE_LIMIT_S
            ):
                break  # all sent, or so far behind that the rest counts as unsent
            await asyncio.sleep(max(due - time.monotonic(), 0))
            await slots.acquire()
            if rate is not None and time.monotonic() > due + LATE_LIMIT_S:
                posted.late += 1
            posted.sent += 1
            task = asyncio.create_task(send(body))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    return posted
