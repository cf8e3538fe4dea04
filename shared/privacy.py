"""What every service needs to honour an erasure: keyed hashes of identifiers, the leads it
erased (to drop their late messages), and its report.

- **Keyed hashes** (`identifier_hash`): HMAC-SHA256 under the deployment's privacy key of an
  identifier's kind and value. The do-not-track list and the erasure audit keep only these: a
  hash cannot be turned back into the address, and without the key nobody can test a guess.
- **Erased leads** (`ErasedLeads`, table `<schema>.erased_leads`): the SHA-256 of each erased
  lead id, kept `days` (longer than any topic keeps a message). A message about an erased lead
  can still arrive after the erasure (it was on its way: produced before, consumed after); a
  service that finds no state for a lead asks `among` and drops the message instead of
  creating the lead again. Only hashes of lead ids: a lead id names nobody once the lead is
  erased, and these rows are not a list of people.
- **Reports** (`erasure_report`): the `privacy.reports` output a service adds to the batch that
  erased its part, so the report is sent only once that part is committed.

Races: a service erases under the same lock its consumer takes for a lead's messages (score's
lead locks, the router's and console's row locks), records the erased leads in the same
transaction, and checks `among` in a statement after taking that lock, so a message handled
concurrently either finishes before the erasure (and is erased with it) or finds the lead
erased.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.config_versions import checked_schema
from shared.consumer import Output
from shared.contracts import ErasureNotice, ErasureReport
from shared.db import execute, fetch
from shared.topics import PRIVACY_REPORTS

TOPICS_KEEP_AT_MOST_DAYS = 31
"""The longest a topic keeps a message (30 days' retention, and a day its last segment may stay
open: deploy/components/strimzi-kafka/topics.yaml; tests/deploy checks it): the shortest
retention allowed for what a message that can still arrive must find (erased leads' records,
score's history)."""


def identifier_hash(key: bytes, *, kind: str, value: str) -> bytes:
    """The keyed hash of an identifier (`kind`: email, user_id or anonymous_id; `value`
    normalised as identity resolution keeps it). Deterministic for one key."""
    return hmac.digest(key, f"{kind}\x00{value}".encode(), "sha256")


def lead_id_digest(lead_id: str) -> bytes:
    return hashlib.sha256(lead_id.encode()).digest()


def erased_leads_ddl(schema: str) -> list[str]:
    """The statements a service's migration runs for `ErasedLeads` (schema: a plain
    identifier, as for `config_versions_ddl`)."""
    schema = checked_schema(schema)
    return [
        f"""
        CREATE TABLE "{schema}".erased_leads (
            lead_digest bytea PRIMARY KEY,
            erased_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        f'CREATE INDEX erased_leads_erased_at_idx ON "{schema}".erased_leads (erased_at)',
    ]


class ErasedLeads:
    """The leads a service erased (see the module doc), in its own schema."""

    def __init__(self, schema: str) -> None:
        self._schema = checked_schema(schema)

    async def remember(self, session: AsyncSession, lead_ids: Iterable[str]) -> None:
        digests = sorted({lead_id_digest(lead_id) for lead_id in lead_ids})
        if digests:
            await execute(
                session,
                f'INSERT INTO "{self._schema}".erased_leads (lead_digest)'
                " SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING",
                digests,
            )

    async def among(self, session: AsyncSession, lead_ids: Iterable[str]) -> set[str]:
        """Those of `lead_ids` that were erased (one index probe each)."""
        by_digest = {lead_id_digest(lead_id): lead_id for lead_id in set(lead_ids)}
        if not by_digest:
            return set()
        rows = await fetch(
            session,
            f'SELECT lead_digest FROM "{self._schema}".erased_leads'
            " WHERE lead_digest = ANY($1::bytea[])",
            list(by_digest),
        )
        return {by_digest[bytes(row["lead_digest"])] for row in rows}

    async def forget_older_than(self, session: AsyncSession, *, days: float) -> int:
        """Drop the records of erasures older than `days` (housekeeping; by index)."""
        return await execute(
            session,
            f'DELETE FROM "{self._schema}".erased_leads'
            " WHERE erased_at < now() - make_interval(secs => $1)",
            days * 86400,
        )


def erasure_report(
    notice: ErasureNotice,
    *,
    service: str,
    erased: Mapping[str, int],
    anonymised: Mapping[str, int] | None = None,
    at: datetime,
) -> Output:
    """The `privacy.reports` output of `service` for `notice` (tables with no row left out)."""
    return Output(
        PRIVACY_REPORTS,
        key=notice.request_id,
        value=ErasureReport(
            request_id=notice.request_id,
            service=service,
            erased={table: count for table, count in erased.items() if count},
            anonymised={table: count for table, count in (anonymised or {}).items() if count},
            reported_at=at,
        ),
    )
