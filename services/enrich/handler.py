"""The consumer handler: `events.raw` (+ `enrich.commands`) -> `events.enriched`.

Per batch of events, in one transaction (the runner's): claim message ids (a client's retry of a
messageId is dropped here, once, for as long as ids are kept), load every identity, identity
fact and lead the batch mentions (one query, leads locked), look up the firmographics of the
company domains the batch names (concurrently, within `lookup_budget_s`: a slow or failed
provider delays nothing, the lead is marked pending and re-enriched later), then resolve events
in consumption order in memory, and write links, changed leads and anonymous history in a few
batched statements. A lead whose picture an event leaves as it was (most page views and tracks)
is not rewritten, and its `lead_version` stays. Merges are the exception: a few statements each.

Erasure (`erasing`): a batch's `erase` commands are carried out first, before anything else
takes a lock (they close the do-not-track gate); its events are then checked against the
do-not-track list right after their message ids are claimed, and the calls of an erased person
are dropped unseen. `privacy.reports` mark services' parts of a request complete.

Outputs per event, in this order: re-attributed anonymous history (if the event absorbed an
anonymous lead), one `merged` per merged lead, then the event itself. Because the history rows
are deleted in the same transaction that stores these outputs in the outbox, a redelivered batch
never re-emits them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich import erasing, repository
from services.enrich.firmographics import FirmographicsProvider, ProviderUnavailable
from services.enrich.identity import (
    Identity,
    IdentityKind,
    LeadFacts,
    Refusal,
    email_of,
    identities_of,
    is_identifying,
    placeholder_alias_refusal,
    previous_identities,
    resolve,
    traits_of,
)
from services.enrich.merges import restore, snapshot, survivor_after_unmerge
from services.enrich.metrics import refusals_of
from services.enrich.profile import (
    company_domain_of,
    consent_after,
    email_company_domain,
    folded_consent,
    folded_profile,
    profile_after,
)
from services.enrich.references import References
from services.enrich.repository import HistoryRow, LeadRecord, MergeRecord
from shared.consumer import InvalidMessage, Message, Output
from shared.contracts import (
    AttributedFrom,
    EnrichCommand,
    EnrichedEvent,
    ErasureReport,
    Firmographics,
    IdentityRefusal,
    MergeInfo,
    RawEvent,
)
from shared.topics import EVENTS_ENRICHED

log = logging.getLogger(__name__)

MERGE_NAMESPACE = uuid.UUID("6c1f7a52-4d0e-4b8e-9a55-0f3c2e7d9b14")


def new_lead_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class EnrichPolicy:
    anonymous_ids_per_week: int = 20
    max_anonymous_history: int = 500
    lookup_budget_s: float = 1.0


@dataclass
class _Batch:
    """What one batch has resolved so far (in memory until the end of the batch)."""

    known: dict[Identity, str]
    facts: dict[str, LeadFacts]
    leads: dict[str, LeadRecord]
    lookups: dict[str, Firmographics | None]
    links: list[tuple[Identity, str]] = field(default_factory=list)
    changed: dict[str, LeadRecord] = field(default_factory=dict)
    history: dict[str, list[HistoryRow]] = field(default_factory=dict)
    history_dropped: set[str] = field(default_factory=set)
    pending_domains: set[str] = field(default_factory=set)
    refused: list[Refusal] = field(default_factory=list)


class EnrichHandler:
    def __init__(
        self,
        *,
        provider: FirmographicsProvider | None,
        references: References,
        policy: EnrichPolicy,
        privacy_key: bytes,
        erasure_reporters: Sequence[str] = ("score", "router", "console", "sync"),
        new_lead_id: Callable[[], str] = new_lead_id,
    ) -> None:
        """`privacy_key`: the key of identifiers' keyed hashes (`shared.privacy`);
        `erasure_reporters`: the services whose reports complete an erasure."""
        self._provider = provider
        self._privacy_key = privacy_key
        self._erasure_reporters = tuple(erasure_reporters)
        self._references = references
        self._policy = policy
        self._new_lead_id = new_lead_id
        self._late_lookups: set[asyncio.Future[Firmographics | None]] = set()
        self._cache = repository.LeadCache()

    def _forget_late_lookup(self, task: asyncio.Future[Firmographics | None]) -> None:
        self._late_lookups.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its failure is the provider's business, logged there

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        outputs: list[Output] = []
        commands = [m.value for m in messages if isinstance(m.value, EnrichCommand)]
        # Erasures first: they close the do-not-track gate, which must come before any lock.
        for command in sorted(commands, key=lambda command: command.kind != "erase"):
            outputs += await self._command(command, session)
        reports = [m.value for m in messages if isinstance(m.value, ErasureReport)]
        if reports:
            await erasing.record_reports(session, reports)
        events = [(m, m.value) for m in messages if isinstance(m.value, RawEvent)]
        if events:
            outputs += await self._events(events, session)
        return outputs

    # -- events ------------------------------------------------------------------------------

    async def _events(
        self, events: list[tuple[Message[BaseModel], RawEvent]], session: AsyncSession
    ) -> list[Output]:
        new_ids = await repository.claim_new_message_ids(
            session, [event.message_id for _, event in events]
        )
        fresh = []
        for message, event in events:
            if event.message_id in new_ids:  # else a client retry, or a duplicate in this batch
                new_ids.discard(event.message_id)
                traits = traits_of(event)
                fresh.append((message, event, identities_of(event, traits), traits))
        blocked = await erasing.blocked_events(
            session,
            key=self._privacy_key,
            identities=[
                [*identities, *previous_identities(event)] for _, event, identities, _ in fresh
            ],
        )
        if blocked:
            fresh = [call for index, call in enumerate(fresh) if index not in blocked]
        wanted = [i for _, _, identities, _ in fresh for i in identities]
        wanted += [
            i
            for _, event, _, _ in fresh
            if event.type == "alias"
            for i in previous_identities(event)
        ]
        stored = await repository.find_by_identities(session, wanted, cache=self._cache)
        batch = _Batch(
            known=stored.known,
            facts=stored.facts,
            leads=stored.leads,
            lookups=await self._look_up(
                {d for _, _, _, traits in fresh if (d := company_domain_of(traits))}
            ),
        )
        outputs: list[Output] = []
        for message, event, found, traits in fresh:
            outputs += await self._event(session, batch, message, event, found, traits)
        await repository.request_enrichment(session, batch.pending_domains)
        await repository.store_batch(
            session,
            links=batch.links,
            history_dropped=batch.history_dropped,
            history=[row for rows in batch.history.values() for row in rows],
            leads=list(batch.changed.values()),
            cache=self._cache,
        )
        self._cache.link(batch.known.items())
        for refusal in batch.refused:
            refusals_of(refusal.identity.kind, refusal.reason).inc()
        return outputs

    async def _event(
        self,
        session: AsyncSession,
        batch: _Batch,
        message: Message[BaseModel],
        event: RawEvent,
        found: list[Identity],
        traits: dict[str, object],
    ) -> list[Output]:
        resolution = resolve(
            found,
            known=batch.known,
            leads=batch.facts,
            new_lead_id=self._new_lead_id,
            anonymous_ids_per_week=self._policy.anonymous_ids_per_week,
            previous=previous_identities(event) if event.type == "alias" else (),
        )
        if resolution is None:
            raise InvalidMessage(
                message, "no usable userId, email or anonymousId (only empty or placeholder ids)"
            )
        refused = list(resolution.refused)
        if event.type == "alias" and (placeholder := placeholder_alias_refusal(event)):
            refused.append(placeholder)
        for refusal in refused:
            # The kind only: an identity's value is an email or a userId (PII, never logged).
            log.info("lead %s: %s", resolution.lead_id, refusal.text)
        batch.refused += refused
        lead = batch.leads.get(resolution.lead_id)
        created = lead is None
        if lead is None:
            lead = batch.leads[resolution.lead_id] = LeadRecord(lead_id=resolution.lead_id)
        before = _picture_of(lead)
        for identity in resolution.new_links:
            batch.known[identity] = lead.lead_id
            batch.links.append((identity, lead.lead_id))
        self._note_facts(batch, lead.lead_id, resolution.new_links)

        was_identified = lead.identified
        lead.profile = profile_after(lead.profile, traits)
        if not lead.identified and is_identifying(found):
            lead.identified, lead.identified_at = True, event.timestamp
        lead.consent = consent_after(
            lead.consent,
            event=event,
            traits=traits,
            suppression_reason=self._references.suppressions.reason_for(lead.profile),
        )
        history: list[tuple[HistoryRow, str]] = []
        merges: list[MergeInfo] = []
        for merged_id in resolution.merged:
            rows, info = await self._merge(
                session,
                batch,
                survivor=lead,
                merged=batch.leads.get(merged_id) or LeadRecord(lead_id=merged_id),
                absorbed=merged_id in resolution.absorbed_anonymous,
                aliased=merged_id in resolution.aliased,
                trigger=event,
            )
            history += [(row, merged_id) for row in rows]
            merges.append(info)
        self._refresh_company(batch, lead)
        if created or merges or _picture_of(lead) != before:
            # Only a changed picture is a new version to store; most calls (page views, tracks)
            # change nothing, and their lead row is left as it is.
            lead.version += 1
            batch.changed[lead.lead_id] = lead

        outputs = [
            self._output(reattributed(row.payload, lead, from_lead=from_lead), source=message)
            for row, from_lead in history
        ]
        outputs += [
            self._output(
                lead_message(
                    lead,
                    kind="merged",
                    message_id=f"merged:{info.merge_id}",
                    at=event.timestamp,
                    received_at=event.received_at,
                    merge=info,
                ),
                source=message,
            )
            for info in merges
        ]
        enriched = enriched_event(event, lead, refused=refused)
        outputs.append(self._output(enriched, source=message))
        if lead.identified and not was_identified:
            # Became known under its own lead_id: its anonymous history is already its own.
            batch.history.pop(lead.lead_id, None)
            batch.history_dropped.add(lead.lead_id)
        elif not lead.identified:
            # Still anonymous (e.g. two anonymous ids aliased): the absorbed history becomes this
            # lead's, so it is re-attributed again if this lead is identified later.
            kept = [HistoryRow(lead.lead_id, row.message_id, row.payload) for row, _ in history]
            kept.append(
                HistoryRow(lead.lead_id, event.message_id, kept_form(event, lead_id=lead.lead_id))
            )
            room = max(0, self._policy.max_anonymous_history - lead.anonymous_events_stored)
            batch.history.setdefault(lead.lead_id, []).extend(kept[:room])
            lead.anonymous_events_stored += len(kept[:room])
        return outputs

    def _note_facts(self, batch: _Batch, lead_id: str, links: Sequence[Identity]) -> None:
        if not links:
            return  # most events link nothing new: the facts stand as they are
        facts = batch.facts.get(lead_id) or LeadFacts(lead_id)
        users = {
            i.value
            for i in links
            if i.kind is IdentityKind.USER_ID
            # an email-derived userId is not the lead's userId (see `identity`)
            and batch.known.get(Identity(IdentityKind.EMAIL, email_of(i.value) or "")) != lead_id
        }
        anonymous = sum(1 for i in links if i.kind is IdentityKind.ANONYMOUS_ID)
        batch.facts[lead_id] = LeadFacts(
            lead_id=lead_id,
            user_ids=facts.user_ids | users if users else facts.user_ids,
            identified=facts.identified or is_identifying(links),
            anonymous_ids_this_week=facts.anonymous_ids_this_week + anonymous,
        )

    async def _merge(
        self,
        session: AsyncSession,
        batch: _Batch,
        *,
        survivor: LeadRecord,
        merged: LeadRecord,
        absorbed: bool,
        aliased: bool,
        trigger: RawEvent,
    ) -> tuple[list[HistoryRow], MergeInfo]:
        """Fold `merged` into `survivor`: identities move, the merge is recorded with both
        leads' pictures as they were (reversible: `unmerge`), an anonymous lead's kept history
        is taken to be re-attributed."""
        moved = await repository.move_identities(
            session, from_lead=merged.lead_id, to_lead=survivor.lead_id
        )
        for index, (identity, owner) in enumerate(batch.links):
            if owner == merged.lead_id:
                batch.links[index] = (identity, survivor.lead_id)
                moved.append(identity)
        for identity, owner in list(batch.known.items()):
            if owner == merged.lead_id:
                batch.known[identity] = survivor.lead_id
        theirs = batch.facts.pop(merged.lead_id, LeadFacts(merged.lead_id))
        mine = batch.facts.get(survivor.lead_id) or LeadFacts(survivor.lead_id)
        batch.facts[survivor.lead_id] = replace(
            mine,
            user_ids=mine.user_ids | theirs.user_ids,
            identified=mine.identified or theirs.identified,
            anonymous_ids_this_week=mine.anonymous_ids_this_week + theirs.anonymous_ids_this_week,
        )
        history: list[HistoryRow] = []
        if absorbed:
            history = await repository.take_anonymous_history(session, merged.lead_id)
            history += batch.history.pop(merged.lead_id, [])
        merge_id = str(
            uuid.uuid5(MERGE_NAMESPACE, f"{survivor.lead_id}:{merged.lead_id}:{trigger.message_id}")
        )
        if aliased:
            reason = "same person (an alias call joined a previous id to the userId)"
        elif absorbed:
            reason = "anonymous visitor identified"
        else:
            reason = "same person (shared identity)"
        await repository.record_merge(
            session,
            MergeRecord(
                merge_id=merge_id,
                surviving_lead_id=survivor.lead_id,
                merged_lead_id=merged.lead_id,
                reason=reason,
                history_replayed=absorbed,
                moved_identities=tuple(sorted(set(moved))),
                merged_lead_snapshot=snapshot(merged),
                surviving_lead_snapshot=snapshot(survivor),
                triggered_by=trigger.message_id,
                aliased=aliased,
            ),
        )
        survivor.profile = folded_profile(survivor.profile, merged.profile)
        survivor.consent = folded_consent(survivor.consent, merged.consent)
        if merged.identified and not survivor.identified:
            survivor.identified, survivor.identified_at = True, merged.identified_at
        if survivor.firmographics is None and merged.firmographics is not None:
            survivor.firmographics = merged.firmographics
            survivor.firmographics_domain = merged.firmographics_domain
        merged.merged_into = survivor.lead_id
        merged.version += 1
        batch.changed[merged.lead_id] = merged
        log.info("merged lead %s into %s (%s)", merged.lead_id, survivor.lead_id, reason)
        return history, MergeInfo(
            merge_id=merge_id,
            surviving_lead_id=survivor.lead_id,
            merged_lead_ids=[merged.lead_id],
            reason=reason,
            history_replayed=absorbed,
            aliased=aliased,
        )

    def _refresh_company(self, batch: _Batch, lead: LeadRecord) -> None:
        """Firmographics and account for the lead's current company domain and name."""
        domain = lead.profile.company_domain
        if domain is None:
            lead.firmographics, lead.firmographics_pending, lead.firmographics_domain = (
                None,
                False,
                None,
            )
        elif domain != lead.firmographics_domain:
            lead.firmographics_domain = domain
            if domain in batch.lookups:
                lead.firmographics, lead.firmographics_pending = batch.lookups[domain], False
            else:
                lead.firmographics, lead.firmographics_pending = None, True
                batch.pending_domains.add(domain)
        email_domain = email_company_domain(lead.profile.email)
        lead.account = self._references.accounts.match(
            email_domain=email_domain,
            website_domain=domain if domain != email_domain else None,
            company=lead.profile.company,
        )

    async def _look_up(self, domains: set[str]) -> dict[str, Firmographics | None]:
        """Every domain's answer that arrives within the budget; the others are left out (and
        their leads marked pending by `_refresh_company`)."""
        if not domains or self._provider is None:
            return {}
        provider = self._provider
        tasks = {domain: asyncio.ensure_future(provider.lookup(domain)) for domain in domains}
        done, late = await asyncio.wait(tasks.values(), timeout=self._policy.lookup_budget_s)
        for task in late:
            # Not cancelled: a late answer still fills the provider's cache, and a late failure
            # still counts towards its circuit breaker, so a hanging vendor is soon skipped.
            self._late_lookups.add(task)
            task.add_done_callback(self._forget_late_lookup)
        answers: dict[str, Firmographics | None] = {}
        for domain, task in tasks.items():
            if task not in done:
                continue
            if (error := task.exception()) is None:
                answers[domain] = task.result()
            elif not isinstance(error, ProviderUnavailable):
                log.warning("firmographics lookup of %s failed: %r", domain, error)
        if late or len(answers) < len(tasks):
            log.info(
                "firmographics: %d of %d domains pending", len(tasks) - len(answers), len(tasks)
            )
        return answers

    # -- commands ----------------------------------------------------------------------------

    async def _command(self, command: EnrichCommand, session: AsyncSession) -> list[Output]:
        if command.kind == "erase":
            assert command.request_id is not None
            person, outputs = await erasing.carry_out(
                session,
                request_id=command.request_id,
                key=self._privacy_key,
                reporters=self._erasure_reporters,
                at=datetime.now(UTC),
            )
            self._cache.forget(person.lead_ids)
            return outputs
        if command.kind == "firmographics_found":
            assert command.domain is not None
            return await self._firmographics_found(session, command)
        assert command.merge_id is not None
        return await unmerge(
            session,
            merge_id=command.merge_id,
            by=command.requested_by or "operator",
            at=command.at,
            cache=self._cache,
        )

    async def _firmographics_found(
        self, session: AsyncSession, command: EnrichCommand
    ) -> list[Output]:
        """Complete the leads that waited for this domain: one `profile_updated` each."""
        assert command.domain is not None
        outputs = []
        leads = await repository.get_leads_waiting_for(session, command.domain)
        for lead in leads:
            lead.firmographics = command.firmographics
            lead.firmographics_pending = False
            lead.firmographics_domain = command.domain
            lead.version += 1
            outputs.append(
                self._output(
                    lead_message(
                        lead,
                        kind="profile_updated",
                        message_id=f"profile:{lead.lead_id}:{lead.version}",
                        at=command.at,
                        received_at=command.at,
                    )
                )
            )
        await repository.save_leads(session, leads, cache=self._cache)
        await repository.enrichment_done(session, command.domain)
        return outputs

    @staticmethod
    def _output(value: EnrichedEvent, *, source: Message[BaseModel] | None = None) -> Output:
        """`value` on `events.enriched`, keyed by its lead. `source`: the message it came from
        (outputs are keyed unlike the input, so the runner cannot trace them by key)."""
        return Output(EVENTS_ENRICHED, key=value.lead_id, value=value, source=source)


async def unmerge(
    session: AsyncSession,
    *,
    merge_id: str,
    by: str,
    at: datetime,
    cache: repository.LeadCache | None = None,
) -> list[Output]:
    """Reverse a merge: the merged lead's identities (those moved by the merge and still on the
    survivor) and its picture as it was come back; the survivor gives back what the merge gave
    it (`merges.survivor_after_unmerge`; a merge recorded before survivors were kept with it
    leaves the survivor as it is); the merge is marked unmerged. Emits `unmerged` (key:
    survivor, with its picture) and a `profile_updated` for the restored lead. Applying it
    twice, or to an unknown merge, does nothing. `cache`: the handler's (see `save_leads`)."""
    merge = await repository.get_merge(session, merge_id, lock=True)
    if merge is None or merge.unmerged_at is not None:
        log.warning("unmerge %s: %s", merge_id, "no such merge" if merge is None else "already")
        return []
    leads = await repository.get_leads(session, [merge.surviving_lead_id, merge.merged_lead_id])
    restored = restore(merge.merged_lead_snapshot, lead_id=merge.merged_lead_id)
    survivor = leads[merge.surviving_lead_id]
    if merge.surviving_lead_snapshot is not None:
        before = restore(merge.surviving_lead_snapshot, lead_id=survivor.lead_id)
        survivor = survivor_after_unmerge(survivor, before=before, merged=restored)
    restored.version = max(restored.version, leads[merge.merged_lead_id].version) + 1
    await repository.move_identities(
        session,
        from_lead=survivor.lead_id,
        to_lead=restored.lead_id,
        only=merge.moved_identities,
    )
    survivor.version += 1
    await repository.save_leads(session, [survivor, restored], cache=cache)
    await repository.mark_unmerged(session, merge_id, by=by)
    info = MergeInfo(
        merge_id=merge_id,
        surviving_lead_id=survivor.lead_id,
        merged_lead_ids=[restored.lead_id],
        reason=f"unmerged by {by}",
        history_replayed=merge.history_replayed,
        aliased=merge.aliased,
    )
    log.info("unmerged %s: lead %s restored from %s", merge_id, restored.lead_id, survivor.lead_id)
    return [
        EnrichHandler._output(
            lead_message(
                survivor,
                kind="unmerged",
                message_id=f"unmerged:{merge_id}",
                at=at,
                received_at=at,
                merge=info,
            )
        ),
        EnrichHandler._output(
            lead_message(
                restored,
                kind="profile_updated",
                message_id=f"profile:{restored.lead_id}:{restored.version}",
                at=at,
                received_at=at,
            )
        ),
    ]


def _picture_of(lead: LeadRecord) -> tuple[object, ...]:
    """What `lead_version` versions: everything stored about the lead but its version and the
    count of anonymous events it keeps (read from those events' table when it is loaded)."""
    return (
        lead.profile,
        lead.identified,
        lead.identified_at,
        lead.consent,
        lead.firmographics,
        lead.firmographics_pending,
        lead.firmographics_domain,
        lead.account,
        lead.merged_into,
    )


def _picture(lead: LeadRecord) -> dict[str, object]:
    return {
        "lead_id": lead.lead_id,
        "lead_version": lead.version,
        "identified": lead.identified,
        "stage": "known" if lead.identified else "anonymous",
        "profile": lead.profile,
        "firmographics": lead.firmographics,
        "firmographics_pending": lead.firmographics_pending,
        "account": lead.account,
        "account_id": lead.account.account_id if lead.account else None,
        "consent": lead.consent,
    }


def enriched_event(
    event: RawEvent, lead: LeadRecord, *, refused: Sequence[Refusal] = ()
) -> EnrichedEvent:
    """The call as `lead`'s, with its current picture and the identities a guardrail refused."""
    return EnrichedEvent(
        kind="event",
        message_id=event.message_id,
        type=event.type,
        event=event.event,
        name=event.name,
        source=event.source,
        timestamp=event.timestamp,
        received_at=event.received_at,
        properties=event.properties,
        context=event.context,
        identity_refusals=[
            IdentityRefusal(
                kind=refusal.identity.kind.value,
                reason=refusal.reason.value,
                other_lead_id=refusal.other_lead_id,
                detail=refusal.text,
            )
            for refusal in refused
        ],
        **_picture(lead),
    )


def lead_message(
    lead: LeadRecord,
    *,
    kind: str,
    message_id: str,
    at: datetime,
    received_at: datetime,
    merge: MergeInfo | None = None,
) -> EnrichedEvent:
    return EnrichedEvent(
        kind=kind,
        message_id=message_id,
        source="enrich",
        timestamp=at,
        received_at=received_at,
        merge=merge,
        **_picture(lead),
    )


def reattributed(payload: dict[str, object], lead: LeadRecord, *, from_lead: str) -> EnrichedEvent:
    """A kept anonymous event, re-emitted under the known lead with its current picture.

    `payload` is a `kept_form` (or, stored by earlier versions, a whole emitted event: its
    picture is replaced the same way)."""
    return EnrichedEvent.model_validate(
        {
            **payload,
            **_picture(lead),
            "attributed_from": payload.get("attributed_from") or AttributedFrom(lead_id=from_lead),
        }
    )


def kept_form(event: RawEvent, *, lead_id: str) -> dict[str, object]:
    """How an anonymous event is kept: the call's own fields as emitted under `lead_id`, plus
    where it came from (the anonymous lead and anonymousId), which `reattributed` carries on.

    The lead's picture is left out: `reattributed` replaces it with the known lead's anyway.
    Built as plain JSON values (no model copy or dump): most anonymous events are kept."""
    return {
        "kind": "event",
        "message_id": event.message_id,
        "type": event.type,
        "event": event.event,
        "name": event.name,
        "source": event.source,
        "timestamp": event.timestamp.isoformat(),
        "received_at": event.received_at.isoformat(),
        "properties": event.properties,
        "context": event.context,
        "attributed_from": {"lead_id": lead_id, "anonymous_id": event.anonymous_id},
    }
