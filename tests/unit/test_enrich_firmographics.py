"""Firmographics providers: the sample file, bands, and the HTTP vendor's retries, cache and
circuit breaker (an in-memory httpx transport stands in for the network; a fake clock for time)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.enrich.config import DATA_DIR
from services.enrich.firmographics import FileProvider, ProviderUnavailable, revenue_band, size_band
from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.references import References
from services.enrich.vendor import HttpVendorProvider
from shared.contracts import Firmographics
from tests.fixtures.enrich import PRIVACY_KEY

pytestmark = pytest.mark.unit

DEMO_DOMAINS = ["acme-robotics.com", "globex.com", "initech.com", "umbrella-health.com",
                "hooli.io", "vandelay.co"]  # fmt: skip


@pytest.mark.parametrize(
    ("employees", "band"), [(1, "1-10"), (10, "1-10"), (11, "11-50"), (450, "201-500"),
                            (25000, "10001+"), (None, None)]
)  # fmt: skip
def test_size_band(employees: int | None, band: str | None) -> None:
    assert size_band(employees) == band


@pytest.mark.parametrize(
    ("revenue", "band"), [(500_000, "<1M"), (72_000_000, "50M-100M"), (2_400_000_000, "1B+")]
)
def test_revenue_band(revenue: int, band: str) -> None:
    assert revenue_band(revenue) == band


async def test_the_sample_file_covers_the_demo_companies() -> None:
    provider = FileProvider(DATA_DIR / "companies.csv")

    assert len(provider) >= 300
    for domain in DEMO_DOMAINS:
        found = await provider.lookup(domain)
        assert found is not None, domain
        assert found.company_name, domain
        assert found.size_band, domain
    initech = await provider.lookup("INITECH.com")
    assert initech is not None
    assert (initech.employee_count, initech.size_band, initech.industry) == (
        450,
        "201-500",
        "Software",
    )
    assert initech.sources["employee_count"] == "file:companies.csv"
    assert await provider.lookup("no-such-company.example") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def vendor(handler: httpx.MockTransport, clock: Clock, **options: float) -> HttpVendorProvider:
    return HttpVendorProvider(
        base_url="https://vendor.test",
        api_key="k",
        retry_backoff_s=0,
        clock=clock,
        transport=handler,
        **options,  # type: ignore[arg-type]
    )


async def test_vendor_answers_are_cached_for_their_ttl() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        assert request.headers["Authorization"] == "Bearer k"
        if request.url.path.endswith("/unknown.io"):
            return httpx.Response(404)
        return httpx.Response(200, json={"name": "Initech", "employee_count": 450,
                                         "industry": "Software", "country": "us"})  # fmt: skip

    clock = Clock()
    provider = vendor(httpx.MockTransport(answer), clock, cache_ttl_s=60)

    found = await provider.lookup("initech.com")
    assert found is not None
    assert found.country == "US"
    assert found.size_band == "201-500"
    assert found.sources == {"company_name": "http:vendor.test", "employee_count": "http:vendor.test",
                             "industry": "http:vendor.test", "country": "http:vendor.test",
                             "size_band": "http:vendor.test"}  # fmt: skip
    assert await provider.lookup("initech.com") == found
    assert await provider.lookup("unknown.io") is None
    assert await provider.lookup("unknown.io") is None
    assert len(calls) == 2
    clock.now += 61
    await provider.lookup("initech.com")
    assert len(calls) == 3


async def test_vendor_retries_then_fails_and_the_circuit_opens_then_recovers() -> None:
    calls = 0
    healthy = False

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if not healthy:
            return httpx.Response(503)
        return httpx.Response(200, json={"name": "Globex"})

    clock = Clock()
    provider = vendor(httpx.MockTransport(answer), clock, retries=2, breaker_failures=2,
                      breaker_reset_s=30)  # fmt: skip

    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await provider.lookup("a.com")
    assert calls == 3  # one try and two retries
    with pytest.raises(ProviderUnavailable):
        await provider.lookup("b.com")
    assert provider.breaker.is_open
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        await provider.lookup("c.com")
    assert calls == 6  # the open circuit made no call

    healthy = True
    clock.now += 31
    found = await provider.lookup("c.com")
    assert found is not None
    assert found.company_name == "Globex"
    assert not provider.breaker.is_open


async def test_vendor_timeouts_count_as_failures() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    provider = vendor(httpx.MockTransport(answer), Clock(), retries=0)

    with pytest.raises(ProviderUnavailable, match="ReadTimeout"):
        await provider.lookup("slow.io")


class SlowAndDownProvider:
    """initech.com answers at once, hang.io answers after the budget, down.io fails."""

    name = "fake"

    def __init__(self) -> None:
        self.finished: list[str] = []

    async def lookup(self, domain: str) -> Firmographics | None:
        if domain == "hang.io":
            await asyncio.sleep(0.3)
        if domain == "down.io":
            raise ProviderUnavailable("fake: HTTP 503")
        self.finished.append(domain)
        return Firmographics(domain=domain, company_name=domain)


async def test_a_batch_waits_for_the_provider_no_longer_than_its_budget() -> None:
    provider = SlowAndDownProvider()
    handler = EnrichHandler(
        provider=provider,
        references=References(),
        policy=EnrichPolicy(lookup_budget_s=0.05),
        privacy_key=PRIVACY_KEY,
    )

    started = time.monotonic()
    answers = await handler._look_up({"initech.com", "hang.io", "down.io"})

    assert time.monotonic() - started < 0.25
    assert set(answers) == {"initech.com"}  # the others are left to re-enrichment
    await asyncio.sleep(0.4)
    assert "hang.io" in provider.finished  # not cancelled: its answer still reaches the cache
