"""`privacy.erasures` and `privacy.reports`: a person's erasure, carried to every service.

An erasure request (by email, userId or anonymousId: `python -m services.enrich erase`, or
`POST /v1/erasures` on enrich's API) is resolved by enrich through its identity graph to the
person's leads: the lead that holds the identifier and every lead merged into it. enrich erases
what it owns, puts every identifier the person had on its do-not-track list, and publishes one
`ErasureNotice` naming the leads (never the identifiers: the topic holds no personal data).
Every service that keeps leads (score, router, console; a CRM connector may too) erases what it
owns for those leads, exactly once, and answers with an `ErasureReport`; enrich keeps each
request's status per service from those reports.

Keys: the request id (a notice and its reports stay in order with each other).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.contracts.base import AwareDatetime, Contract


class ErasureNotice(Contract):
    """Erase these leads. `lead_ids`: every lead of the person (merged leads included); a
    service that knows none of them erases nothing and still reports. `erased_at`: when enrich
    erased its part (its own data and the identity graph are gone by then)."""

    schema_version: Literal[1] = 1
    request_id: str = Field(min_length=1)
    lead_ids: list[str] = Field(min_length=1, max_length=10_000)
    requested_at: AwareDatetime
    erased_at: AwareDatetime

    @property
    def partition_key(self) -> str:
        return self.request_id


class ErasureReport(Contract):
    """What one service did for one request. `erased`: rows deleted, per table; `anonymised`:
    rows kept for counts with every link to the person removed, per table. A service reports
    once it has committed its part; reporting twice (a redelivered notice) changes nothing."""

    schema_version: Literal[1] = 1
    request_id: str = Field(min_length=1)
    service: str = Field(min_length=1, max_length=64)
    erased: dict[str, int] = Field(default_factory=dict)
    anonymised: dict[str, int] = Field(default_factory=dict)
    reported_at: AwareDatetime

    @property
    def partition_key(self) -> str:
        return self.request_id
