"""An HTTP firmographics vendor behind the provider interface, built not to slow enrich down.

`GET {base_url}/v1/companies/{domain}` with a bearer key; 200 -> JSON with `name`,
`employee_count`, `industry`, `annual_revenue_usd`, `country`; 404 -> unknown domain. Any other
answer, a timeout or a refused connection is a failure:

- each attempt has a short timeout, and failures are retried a few times with backoff;
- answers (found and not-found) are cached for `cache_ttl_s`, so a busy domain costs one call;
- after `breaker_failures` failed lookups in a row the circuit opens: lookups fail at once (no
  network) for `breaker_reset_s`, then one trial lookup decides whether it closes again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from cachetools import TTLCache

from services.enrich.firmographics import ProviderUnavailable, firmographics
from shared.contracts import Firmographics


class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures -> half-open after `reset_s`."""

    def __init__(
        self, *, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        """True while calls must not be tried; false once the reset time allows a trial."""
        return self._opened_at is not None and self._clock() - self._opened_at < self._reset_s

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()  # a failed trial re-opens for another period


class HttpVendorProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str = "",
        timeout_s: float = 0.5,
        retries: int = 1,
        retry_backoff_s: float = 0.05,
        cache_ttl_s: float = 3600.0,
        cache_size: int = 100_000,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = f"http:{httpx.URL(base_url).host}"
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            transport=transport,
        )
        self._retries = retries
        self._backoff_s = retry_backoff_s
        self._cache: TTLCache[str, Firmographics | None] = TTLCache(
            maxsize=cache_size, ttl=cache_ttl_s, timer=clock
        )
        self.breaker = CircuitBreaker(
            failures=breaker_failures, reset_s=breaker_reset_s, clock=clock
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def lookup(self, domain: str) -> Firmographics | None:
        domain = domain.lower()
        if domain in self._cache:
            return self._cache[domain]
        if self.breaker.is_open:
            raise ProviderUnavailable(f"{self.name}: circuit open")
        last_error = ""
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = await self._client.get(f"/v1/companies/{domain}")
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 404:
                return self._remember(domain, None)
            if response.status_code == 200:
                try:
                    body = response.json()
                    found = firmographics(
                        domain=domain,
                        provider=self.name,
                        company_name=body.get("name"),
                        employee_count=body.get("employee_count"),
                        industry=body.get("industry"),
                        annual_revenue_usd=body.get("annual_revenue_usd"),
                        country=body.get("country"),
                    )
                except (ValueError, AttributeError) as exc:
                    last_error = f"unreadable answer: {exc}"
                    continue
                return self._remember(domain, found)
            last_error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # our request is wrong (auth, quota): retrying will not help
        self.breaker.failed()
        raise ProviderUnavailable(f"{self.name}: {last_error}")

    def _remember(self, domain: str, value: Firmographics | None) -> Firmographics | None:
        self.breaker.succeeded()
        self._cache[domain] = value
        return value
