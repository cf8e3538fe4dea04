"""The consumer handler: `events.raw` -> `events.enriched`.

Per batch: claim message ids (a client's retry of the same messageId is dropped here, once),
load every identity and lead the batch mentions in two queries, resolve events in consumption
order in memory (so an identify followed by a track in one batch already agree), then write the
new identity links and the changed leads. Output order follows input order, keyed by lead_id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich import repository
from services.enrich.domain import (
    Identity,
    identities_of,
    is_identified,
    merge_profile,
    opts_out,
    resolve_lead,
)
from services.enrich.repository import LeadRecord
from shared.consumer import InvalidMessage, Message, Output
from shared.contracts import Consent, EnrichedEvent, LeadProfile, RawEvent
from shared.topics import EVENTS_ENRICHED


def new_lead_id() -> str:
    return str(uuid.uuid4())


class EnrichHandler:
    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        events = [(m, m.value) for m in messages if isinstance(m.value, RawEvent)]
        new_ids = await repository.claim_new_message_ids(
            session, [event.message_id for _, event in events]
        )
        identities = {id(event): identities_of(event) for _, event in events}
        known = await repository.get_leads_by_identities(
            session, (i for found in identities.values() for i in found)
        )
        leads = await repository.get_leads(session, known.values())

        outputs: list[Output] = []
        links: list[tuple[Identity, str]] = []
        changed: dict[str, LeadRecord] = {}
        for message, event in events:
            if event.message_id not in new_ids:
                continue  # already enriched: a client retry, or a duplicate inside this batch
            new_ids.discard(event.message_id)
            resolution = resolve_lead(identities[id(event)], known=known, new_lead_id=new_lead_id)
            if resolution is None:
                raise InvalidMessage(message, "no usable userId, email or anonymousId")
            for identity in resolution.new_links:
                known[identity] = resolution.lead_id
                links.append((identity, resolution.lead_id))
            lead = leads.get(resolution.lead_id) or LeadRecord(
                lead_id=resolution.lead_id,
                profile=LeadProfile(),
                identified=False,
                email_opt_out=False,
            )
            lead = LeadRecord(
                lead_id=lead.lead_id,
                profile=merge_profile(lead.profile, event.traits),
                identified=lead.identified or is_identified(identities[id(event)]),
                email_opt_out=lead.email_opt_out or opts_out(event),
            )
            leads[lead.lead_id] = changed[lead.lead_id] = lead
            outputs.append(Output(EVENTS_ENRICHED, key=lead.lead_id, value=enriched(event, lead)))
        await repository.link_identities(session, links)
        await repository.save_leads(session, list(changed.values()))
        return outputs


def enriched(event: RawEvent, lead: LeadRecord) -> EnrichedEvent:
    return EnrichedEvent(
        message_id=event.message_id,
        lead_id=lead.lead_id,
        type=event.type,
        event=event.event,
        name=event.name,
        source=event.source,
        timestamp=event.timestamp,
        received_at=event.received_at,
        identified=lead.identified,
        profile=lead.profile,
        properties=event.properties,
        context=event.context,
        consent=Consent(email_opt_out=lead.email_opt_out),
    )
