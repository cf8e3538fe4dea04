"""The health page's figures: each service's own metrics (`/metrics` on its health port),
read every `interval_s` by a companion; throughput is the change between two readings.

Pure parts (`figures_of`, `ServiceHealth.rate_since`) read Prometheus text; the watcher only
fetches it and keeps the newest two readings per service in memory (a few numbers each).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

READ_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Figures:
    """Totals read from one service's metrics at `read_at` (monotonic seconds)."""

    read_at: float
    handled: float  # messages consumed and handled (ingest: events it accepted)
    lag: float  # messages behind the partitions' high watermarks
    dead_letters: float
    retries: float  # batches retried after a transient failure (database, broker)


def figures_of(text: str, *, read_at: float) -> Figures:
    """The totals in a Prometheus text exposition (metrics a service lacks count 0)."""
    sums = {"handled": 0.0, "lag": 0.0, "dead": 0.0, "retries": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name == "leadflow_messages_in_total":
                sums["handled"] += sample.value
            elif name == "leadflow_consumer_lag":
                sums["lag"] += sample.value
            elif name == "leadflow_dead_letters_total":
                sums["dead"] += sample.value
            elif name == "leadflow_transient_retries_total":
                sums["retries"] += sample.value
    return Figures(
        read_at=read_at,
        handled=sums["handled"],
        lag=sums["lag"],
        dead_letters=sums["dead"],
        retries=sums["retries"],
    )


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    up: bool
    problem: str | None
    now: Figures | None
    before: Figures | None

    @property
    def per_second(self) -> float | None:
        """Messages handled per second between the last two readings."""
        if self.now is None or self.before is None or self.now.read_at <= self.before.read_at:
            return None
        return max(self.now.handled - self.before.handled, 0.0) / (
            self.now.read_at - self.before.read_at
        )


class HealthWatch:
    """Reads every service's metrics each round; `view()` is what the page shows."""

    def __init__(self, urls: dict[str, str]) -> None:
        self._urls = urls
        self._http = httpx.AsyncClient(timeout=READ_TIMEOUT_S)
        self._state: dict[str, ServiceHealth] = {
            name: ServiceHealth(name, up=False, problem="not read yet", now=None, before=None)
            for name in urls
        }

    async def read_all(self) -> None:
        await asyncio.gather(*(self._read(name, url) for name, url in self._urls.items()))

    async def _read(self, name: str, url: str) -> None:
        previous = self._state[name]
        try:
            answer = await self._http.get(url.rstrip("/") + "/metrics")
            answer.raise_for_status()
            figures = figures_of(answer.text, read_at=time.monotonic())
        except (httpx.HTTPError, ValueError) as exc:
            self._state[name] = ServiceHealth(
                name, up=False, problem=f"{type(exc).__name__}", now=None, before=previous.now
            )
            return
        self._state[name] = ServiceHealth(
            name, up=True, problem=None, now=figures, before=previous.now
        )

    def view(self) -> list[ServiceHealth]:
        return [self._state[name] for name in self._urls]

    async def close(self) -> None:
        await self._http.aclose()
