"""enrich's tables (schema `enrich`): leads, identities, seen message ids. Batched statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich.domain import Identity, IdentityKind
from shared.consumer.failures import ConcurrentUpdate
from shared.contracts import LeadProfile

SCHEMA = "enrich"


@dataclass(frozen=True)
class LeadRecord:
    lead_id: str
    profile: LeadProfile
    identified: bool
    email_opt_out: bool


async def claim_new_message_ids(session: AsyncSession, message_ids: Sequence[str]) -> set[str]:
    """Record message ids as seen; return those not seen before (a client retry is not new)."""
    if not message_ids:
        return set()
    rows = await session.execute(
        text(
            """
            INSERT INTO enrich.seen_messages (message_id)
            SELECT DISTINCT m FROM unnest(CAST(:ids AS text[])) AS m
            ON CONFLICT DO NOTHING
            RETURNING message_id
            """
        ),
        {"ids": list(message_ids)},
    )
    return {row[0] for row in rows}


async def get_leads_by_identities(
    session: AsyncSession, identities: Iterable[Identity]
) -> dict[Identity, str]:
    wanted = sorted(set(identities))
    if not wanted:
        return {}
    rows = await session.execute(
        text(
            """
            SELECT i.kind, i.value, i.lead_id FROM enrich.identities AS i
            JOIN unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) AS w(kind, value)
              ON i.kind = w.kind AND i.value = w.value
            """
        ),
        {"kinds": [i.kind.value for i in wanted], "values": [i.value for i in wanted]},
    )
    return {Identity(IdentityKind(kind), value): lead_id for kind, value, lead_id in rows}


async def get_leads(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, LeadRecord]:
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text(
            """
            SELECT lead_id, email, first_name, last_name, title, company, company_domain,
                   identified, email_opt_out
            FROM enrich.leads WHERE lead_id = ANY(CAST(:ids AS text[]))
            FOR UPDATE
            """
        ),
        {"ids": ids},
    )
    return {
        row.lead_id: LeadRecord(
            lead_id=row.lead_id,
            profile=LeadProfile(
                email=row.email,
                first_name=row.first_name,
                last_name=row.last_name,
                title=row.title,
                company=row.company,
                company_domain=row.company_domain,
            ),
            identified=row.identified,
            email_opt_out=row.email_opt_out,
        )
        for row in rows
    }


async def link_identities(session: AsyncSession, links: Sequence[tuple[Identity, str]]) -> None:
    """Point new identities at their leads. Raises `ConcurrentUpdate` if another process linked
    one of them first: the batch is then handled again and sees that link."""
    if not links:
        return
    rows = await session.execute(
        text(
            """
            INSERT INTO enrich.identities (kind, value, lead_id)
            SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:values AS text[]),
                                 CAST(:leads AS text[]))
            ON CONFLICT DO NOTHING
            RETURNING kind
            """
        ),
        {
            "kinds": [i.kind.value for i, _ in links],
            "values": [i.value for i, _ in links],
            "leads": [lead_id for _, lead_id in links],
        },
    )
    if len(rows.all()) != len(links):
        raise ConcurrentUpdate("an identity was linked by another process")


async def save_leads(session: AsyncSession, leads: Sequence[LeadRecord]) -> None:
    if not leads:
        return
    await session.execute(
        text(
            """
            INSERT INTO enrich.leads (lead_id, email, first_name, last_name, title, company,
                                      company_domain, identified, email_opt_out)
            VALUES (:lead_id, :email, :first_name, :last_name, :title, :company,
                    :company_domain, :identified, :email_opt_out)
            ON CONFLICT (lead_id) DO UPDATE SET
                email = EXCLUDED.email, first_name = EXCLUDED.first_name,
                last_name = EXCLUDED.last_name, title = EXCLUDED.title,
                company = EXCLUDED.company, company_domain = EXCLUDED.company_domain,
                identified = EXCLUDED.identified, email_opt_out = EXCLUDED.email_opt_out,
                updated_at = now()
            """
        ),
        [
            {
                "lead_id": lead.lead_id,
                **lead.profile.model_dump(),
                "identified": lead.identified,
                "email_opt_out": lead.email_opt_out,
            }
            for lead in leads
        ],
    )
