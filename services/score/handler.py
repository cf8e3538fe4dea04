"""The consumer handler: `events.enriched`, `crm.feedback`, `score.commands` and
`privacy.erasures` in; `leads.scored`, `leads.lifecycle` and `privacy.reports` out.

Per batch: the leads and ledgers of every lead in it are loaded (row-locked) in one query each;
messages are applied in consumption order (per lead that is event order: every input is keyed
by lead); the ledger, history, stage changes and leads are written at the end, in one
statement (`repository.store_batch`), in the same transaction as the consumed offsets.

Idempotency: a message is scored once per (lead_id, message_id) (`score.history`; for a message
older than 30 days, whose history row may be past its retention, also its lead's ledger lines:
`repository.MAY_BE_FORGOTTEN_AFTER`), CRM feedback once per feedback_id, and every output id
derives from the input (transition ids are `lead:stage:trigger-id`), so redelivery or a replay
from enrich never counts twice and emits the same ids.

- `event`: fit rules on the profile, behaviour rules on the call, both at event time.
- `profile_updated`: fit rules only (a stale picture, older `lead_version`, is ignored).
- `merged`: the merged leads' ledgers are folded into the survivor (see `repository.fold_merged`)
  and the survivor re-evaluated; `unmerged`: the restored leads are leads of their own again.
- `crm.feedback`: the outcome moves the stage as sales reports it, from wherever the lead is
  (`lifecycle.sales_move`: accepted -> sql, qualified -> sqo, won -> customer, rejected/lost ->
  recycled, disqualified); an outcome older than the lead's latest one that holds is kept as
  superseded, one that cannot happen (a customer accepted again) as refused, both in the lead's
  history and on `leadflow_score_feedback_total`. An unknown lead goes to the dead-letter topic
  (a CRM sends an identify call for a lead it created itself first: README, "CRM feedback").
- `score.commands` `reevaluate`: the decay sweep's request to value an MQL's score at a time;
  long enough below the line, it is recycled. `rescore`: the rescore sweep's request to replay a
  lead's history under the running rules and replace its ledger (the histories of a batch's
  rescores are read in one query); a lead's `rule_version` changes only then, so a lead that
  keeps scoring across a rules change is still rescored. The history is kept for a time
  (`housekeeping`): a rescore replays what is left of it (see `_replay`).

Each lead's first touch (`engine.first_touch`: the first source, import list and campaign seen)
is kept on its row as its messages are scored, with or without a model, and every stage change
carries it. A merge keeps the survivor's and fills what it lacks from the merged leads'; an
unmerge takes each side's again from its own messages.

What is stored of a message is minimised (`engine.stored_facts`): the rules read the event's
facts in full, but the history keeps the visitor's IP address and user agent only where a
condition of the batch's rules reads them, an address truncated to its /24 (IPv4) or /48
(IPv6). So a rescore or a simulation under rules that start reading them later finds none in
the messages scored before (see `engine.stored_facts`).

- `privacy.erasures`: every row of the notice's leads goes (`erasure`), under the lead locks
  the batch takes for them as it loads, the leads are recorded as erased (`shared.privacy`)
  in the same transaction, and a `privacy.reports` report says what went. A message about a
  lead that has no row and was erased (it was on its way: an event of any kind, a CRM outcome
  by lead id, a rescore or reevaluation) is dropped and counted
  (`leadflow_score_erased_lead_messages_dropped_total`); the check costs one query per batch
  with leads new to score, none otherwise. A CRM outcome naming an erased lead's email alone
  finds no lead and goes to the dead-letter topic, as for any unknown lead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.score import repository
from services.score.engine.conditions import Facts, call_facts_of, profile_facts_of
from services.score.engine.first_touch import first_touch_of, first_touch_part, learned_first_touch
from services.score.engine.lifecycle import (
    ENGAGEMENT_TYPES,
    Transition,
    Trigger,
    apply,
    earned_move,
    sales_move,
    unmerged_move,
)
from services.score.engine.rescoring import (
    HistoryItem,
    earned_stage,
    replayed,
    with_kept_picture,
)
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import (
    LedgerLine,
    ScoreCard,
    ScoreState,
    evaluate,
    fell_below_line,
    recorded,
    score_event,
)
from services.score.engine.stored_facts import stored_facts
from services.score.erasure import erase_leads
from services.score.learning.activity import Activity, activity_of
from services.score.learning.model import Scorer
from services.score.learning.runs import MODELS
from services.score.metrics import ERASED_LEAD_MESSAGES_DROPPED, FEEDBACK_RESULTS
from services.score.repository import IdentityNote, LeadPicture, LeadRow, StageChange
from shared.config_versions import LiveSource
from shared.consumer import InvalidMessage, Message, Output
from shared.consumer.failures import NotReady
from shared.contracts import (
    Contribution,
    CrmFeedback,
    EnrichedEvent,
    ErasureNotice,
    LeadScored,
    LifecycleChanged,
    Likelihood,
    Score,
    ScoreCommand,
    Stage,
)
from shared.privacy import ErasedLeads, erasure_report
from shared.topics import LEADS_LIFECYCLE, LEADS_SCORED

log = logging.getLogger(__name__)

TOP_CONTRIBUTIONS = 5
ERASED_LEADS = ErasedLeads(repository.SCHEMA)


@dataclass
class _Work:
    """The batch's working set and the writes it collects."""

    rules: RuleSet  # the live rules as the batch started: one version for the whole batch
    leads: dict[str, LeadRow]
    states: dict[str, ScoreState]  # each lead's ledger, as the engine reads it
    scored: set[tuple[str, str]]
    feedback: set[str]
    ledger: list[tuple[str, LedgerLine]] = field(default_factory=list)  # (lead_id, line)
    history: list[tuple[str, HistoryItem]] = field(default_factory=list)
    stage_changes: list[StageChange] = field(default_factory=list)
    notes: list[IdentityNote] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    recent: dict[str, list[Contribution]] = field(default_factory=dict)
    # Rescoring: the stored histories of the leads the batch asks to rescore (read in one
    # query before anything is written; valid until the first flush), and the leads whose
    # stored ledger the next flush replaces.
    histories: dict[str, list[HistoryItem]] = field(default_factory=dict)
    replaced: set[str] = field(default_factory=set)
    flushed: bool = False
    unwritten_lines: set[str] = field(default_factory=set)  # leads with lines in `ledger`
    # The live model as the batch started (`learning.runs.MODELS`: one for the whole batch),
    # the leads whose activity the batch rebuilt for it, and each lead's latest likelihood.
    model: tuple[str, Scorer] | None = None
    rebuilt: set[str] = field(default_factory=set)
    likelihoods: dict[str, Likelihood] = field(default_factory=dict)
    # Leads erased (`privacy.erasures`): those of the batch's messages that had no row and were
    # erased before (`ErasedLeads.among`, asked once as the batch loads), and those the batch
    # erases. Their messages are dropped.
    erased: set[str] = field(default_factory=set)

    def lead(self, lead_id: str) -> LeadRow:
        if lead_id not in self.leads:
            self.leads[lead_id] = LeadRow(lead_id=lead_id)
            self.states.setdefault(lead_id, ScoreState())
        return self.leads[lead_id]


# Output parts are frozen models, and the same few recur in most outputs (a rule's award, a
# score): each is validated once and shared, not built per event. A few hundred distinct ones
# in practice; the caches are bounded all the same.
_PARTS_CACHED = 4096


@functools.lru_cache(maxsize=_PARTS_CACHED)
def _cached_contribution(rule_id: str, points: int, reason: str) -> Contribution:
    return Contribution(rule_id=rule_id, points=points, reason=reason)


@functools.lru_cache(maxsize=_PARTS_CACHED)
def _cached_score(
    fit: int, behaviour: int, total: int, grade: str, band: int, priority: str
) -> Score:
    return Score(
        fit=fit, behaviour=behaviour, total=total, grade=grade, band=band, priority=priority
    )


class ScoreHandler:
    """`rules`: where each batch gets its rule set (`rules_versions.RULES` in the service: the
    live version, read once at the batch's start and used for the whole batch, so a batch
    never mixes two versions; a publication reaches the handler at its next batch)."""

    def __init__(self, rules: LiveSource[RuleSet]) -> None:
        self._rules = rules

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        try:
            live = await self._rules.live(session)
        except ValidationError as exc:  # a stricter score than the one that stored it
            raise NotReady(
                f"the live scoring rules do not pass validation ({exc.error_count()} problems); "
                "publish a version that does: python -m services.score publish-rules <version>"
            ) from exc
        if live is None:
            # the service publishes its rules file at start: only a database emptied under a
            # running replica gets here; retried (NotReady), never scored with nothing
            raise NotReady("no scoring rules are published (score.config_live, kind rules)")
        work = await self._load(messages, session, rules=live[1], model=await MODELS.live(session))
        for message in messages:
            value = message.value
            if isinstance(value, ErasureNotice):
                await self._erase(message, value, work, session)
                continue
            if _lead_id_of(value) in work.erased:
                # about a lead erased before it arrived (it was on its way): not created again
                ERASED_LEAD_MESSAGES_DROPPED.labels(topic=message.topic.name).inc()
                continue
            if isinstance(value, EnrichedEvent):
                if value.kind == "merged":
                    await self._merged(value, work, session)
                elif value.kind == "unmerged":
                    await self._unmerged(value, work, session)
                else:
                    await self._event(value, work, session)
            elif isinstance(value, CrmFeedback):
                await self._feedback(message, value, work, session)
            elif isinstance(value, ScoreCommand) and value.kind == "rescore":
                await self._rescore(value, work, session)
            elif isinstance(value, ScoreCommand):
                self._reevaluate(value, work)
        await self._flush(work, session)
        return work.outputs

    async def _load(
        self,
        messages: Sequence[Message[BaseModel]],
        session: AsyncSession,
        *,
        rules: RuleSet,
        model: tuple[str, Scorer] | None,
    ) -> _Work:
        lead_ids: set[str] = set()
        keys: set[tuple[str, str]] = set()
        aged: set[tuple[str, str]] = set()  # keys whose history row may be past retention
        forgettable = datetime.now(UTC) - repository.MAY_BE_FORGOTTEN_AFTER
        locked: set[str] = set()  # also the leads the batch's merges touch, locked up front
        for message in messages:
            value = message.value
            if isinstance(value, EnrichedEvent):
                lead_ids.add(value.lead_id)
                keys.add((value.lead_id, value.message_id))
                if value.timestamp < forgettable:
                    aged.add((value.lead_id, value.message_id))
                if value.merge is not None:
                    locked.update(value.merge.merged_lead_ids)
            elif isinstance(value, ScoreCommand | CrmFeedback) and value.lead_id:
                lead_ids.add(value.lead_id)
            elif isinstance(value, ErasureNotice):
                locked.update(value.lead_ids)
        feedback_ids = [m.value.feedback_id for m in messages if isinstance(m.value, CrmFeedback)]
        # Every lead lock the batch will need that it can know of, in one ordered statement
        # (locks taken later, e.g. for a survivor, can deadlock; the runner retries those).
        # Without merges, `load_leads` takes exactly these.
        if locked - lead_ids:
            await repository.lock_leads(session, lead_ids | locked)
        leads = await repository.load_leads(session, lead_ids)
        # A lead without a row may be one erased before its message came: asked after the
        # locks, so an erasure that committed while this batch waited for them is seen. Only
        # leads without a row (new leads, mostly), in one query.
        erased = await ERASED_LEADS.among(session, lead_ids - leads.keys())
        rescores = {
            m.value.lead_id
            for m in messages
            if isinstance(m.value, ScoreCommand)
            and m.value.kind == "rescore"
            and m.value.lead_id in leads
            and leads[m.value.lead_id].rule_version != rules.version
        }
        states, scored = await repository.load_states_and_scored(session, lead_ids, keys, aged=aged)
        work = _Work(
            rules=rules,
            leads=leads,
            states=states,
            scored=scored,
            feedback=await repository.feedback_seen(session, feedback_ids),
            histories=await repository.load_histories(session, rescores),
            model=model,
            erased=erased,
        )
        await self._rebuild_activities(work, session, leads)
        return work

    async def _rebuild_activities(
        self, work: _Work, session: AsyncSession, lead_ids: Iterable[str], *, force: bool = False
    ) -> None:
        """Rebuild from their stored histories the activity of the given stored leads that
        have none under the batch's model (`force`: whatever they have, e.g. a survivor whose
        history a merge just grew). Run before any message of theirs is scored, or after a
        flush: the stored histories must hold every message scored so far."""
        if work.model is None:
            return
        version, scorer = work.model
        stale = [
            lead_id
            for lead_id in lead_ids
            if lead_id in work.leads
            and work.leads[lead_id].stored is not None
            and (force or work.leads[lead_id].model_version != version)
        ]
        if not stale:
            return
        histories = (
            work.histories
            if not force and not work.flushed and set(stale) <= work.histories.keys()
            else await repository.load_histories(session, stale)
        )
        for lead_id in stale:
            lead = work.leads[lead_id]
            lead.activity = activity_of(histories[lead_id], keep_s=scorer.keep_s)
            lead.model_version = version
            work.rebuilt.add(lead_id)

    async def _flush(self, work: _Work, session: AsyncSession) -> None:
        """Write what the batch collected so far (before a merge reads the tables, and at the
        end). Idempotent: written lists are emptied."""
        # A rescored lead's stored ledger goes before its new lines are written.
        await repository.delete_ledgers(session, work.replaced)
        await repository.store_batch(
            session,
            ledger=work.ledger,
            history=work.history,
            stage_changes=work.stage_changes,
            leads=list(work.leads.values()),
        )
        await repository.store_identity_notes(session, work.notes)
        work.ledger, work.history, work.stage_changes, work.notes = [], [], [], []
        work.replaced, work.flushed, work.unwritten_lines = set(), True, set()

    # --- events.enriched ----------------------------------------------------------------

    async def _event(self, event: EnrichedEvent, work: _Work, session: AsyncSession) -> None:
        key = (event.lead_id, event.message_id)
        if key in work.scored:
            return
        work.scored.add(key)
        lead = work.lead(event.lead_id)
        if lead.merged_into is not None:
            # The lead was merged before this event of its own reached score (another
            # partition): it counts under the survivor, once.
            await self._flush(work, session)
            survivor = await repository.find_lead(session, lead.lead_id)
            if survivor is None or survivor.lead_id == lead.lead_id:
                return
            work.leads.update(await repository.load_leads(session, [survivor.lead_id]))
            work.states.update(await repository.load_states(session, [survivor.lead_id]))
            await self._rebuild_activities(work, session, [survivor.lead_id])
            key = (survivor.lead_id, event.message_id)
            aged = datetime.now(UTC) - event.timestamp > repository.MAY_BE_FORGOTTEN_AFTER
            seen = await repository.already_scored(session, [key], aged=[key] if aged else [])
            if seen or key in work.scored:
                return
            work.scored.add(key)
            origin = event.lead_id
            event = event.model_copy(update={"lead_id": survivor.lead_id})
            # Its behaviour counts; its picture is the merged lead's, not the survivor's.
            self._score(
                event,
                work.leads[survivor.lead_id],
                work,
                behaviour=True,
                profile=False,
                origin=origin,
            )
            return
        if event.kind == "profile_updated" and event.lead_version < lead.profile_version:
            return  # an older picture than the one already scored
        if event.identity_refusals:
            self._note_refusals(event, work)
        attributed = event.attributed_from
        self._score(
            event,
            lead,
            work,
            behaviour=event.kind == "event",
            origin=attributed.lead_id if attributed is not None else None,
        )

    async def _merged(self, event: EnrichedEvent, work: _Work, session: AsyncSession) -> None:
        assert event.merge is not None
        key = (event.lead_id, event.message_id)
        if key in work.scored:
            return
        await self._flush(work, session)
        merged = [i for i in event.merge.merged_lead_ids if i != event.lead_id]
        await repository.fold_merged(
            session,
            survivor=event.lead_id,
            merged=merged,
            history_replayed=event.merge.history_replayed,
        )
        # Reload both sides: later messages of this batch for a merged lead must see it merged.
        work.leads.update(await repository.load_leads(session, [event.lead_id, *merged]))
        work.states.update(await repository.load_states(session, [event.lead_id, *merged]))
        # the survivor's history now holds the merged leads' messages too
        await self._rebuild_activities(work, session, [event.lead_id], force=True)
        work.scored.add(key)
        self._note_merge(event, work, what="merged")
        survivor = work.lead(event.lead_id)
        # The survivor keeps its own first touch; the merged leads' fill what it lacks, the
        # first listed first (enrich merges one lead at a time: no earlier one to tell apart).
        for merged_id in merged:
            other = work.leads.get(merged_id)
            if other is not None and other.first_touch:
                survivor.first_touch = {**other.first_touch, **(survivor.first_touch or {})}
        self._score(event, survivor, work, behaviour=False)

    async def _unmerged(self, event: EnrichedEvent, work: _Work, session: AsyncSession) -> None:
        """Reverse a merge here too: each restored lead takes back the messages that came from
        it (`repository.return_history`), both sides are scored again from their own messages
        under the running rules (their ledgers replaced), the survivor's fit follows its
        picture without the merged lead's, and a lead in a marketing stage goes to the stage
        its own messages earn (stage changes emitted). Applied once per message."""
        assert event.merge is not None
        key = (event.lead_id, event.message_id)
        if key in work.scored:
            return
        await self._flush(work, session)
        restored = [i for i in event.merge.merged_lead_ids if i != event.lead_id]
        ids = [event.lead_id, *restored]
        await repository.lock_leads(session, ids)
        for lead_id in restored:
            await repository.return_history(session, survivor=event.lead_id, restored=lead_id)
        await repository.unmark_merged(session, restored)
        work.leads.update(await repository.load_leads(session, ids))
        await self._rebuild_activities(work, session, ids, force=True)
        histories = await repository.load_histories(session, ids)
        for lead_id in ids:  # each side's first touch from its own messages again
            touch = first_touch_of(item.facts for item in histories[lead_id])
            work.lead(lead_id).first_touch = touch or None
        cards = {
            lead_id: self._replay(
                work.lead(lead_id), histories[lead_id], work, trigger_id=event.message_id,
                at=event.timestamp,
            )
            for lead_id in ids
        }  # fmt: skip
        work.scored.add(key)
        self._note_merge(event, work, what="unmerged")
        survivor = work.lead(event.lead_id)
        # The survivor's picture is the one the unmerge left it: fit from that, and its history
        # keeps it, so a later replay ends on the same picture.
        self._score(event, survivor, work, behaviour=False)
        cards[survivor.lead_id] = evaluate(work.rules, work.states[survivor.lead_id],
                                           survivor.as_of or event.timestamp)  # fmt: skip
        items = {**histories, survivor.lead_id: [*histories[survivor.lead_id], work.history[-1][1]]}
        for lead_id in ids:
            lead = work.lead(lead_id)
            move = unmerged_move(
                lead.stage,
                earned_stage(work.rules, items[lead_id]),
                f"unmerge {event.merge.merge_id}: the stage its own messages earn",
            )
            if move is not None:
                self._transition(lead, move, trigger_id=event.message_id, at=event.timestamp,
                                 received_at=event.received_at, card=cards[lead_id], work=work)  # fmt: skip

    @staticmethod
    def _note_refusals(event: EnrichedEvent, work: _Work) -> None:
        """An identity note per identity enrich refused to link to the event's lead."""
        work.notes += [
            IdentityNote(
                lead_id=event.lead_id,
                note_id=f"{event.message_id}:refused:{index}",
                at=event.timestamp,
                what="refused",
                detail=refusal.detail,
                other_lead_id=refusal.other_lead_id,
            )
            for index, refusal in enumerate(event.identity_refusals)
        ]

    def _note_merge(self, event: EnrichedEvent, work: _Work, *, what: str) -> None:
        """The identity notes of a merge or an unmerge, on the survivor and each merged lead."""
        assert event.merge is not None
        merge = event.merge
        for other in merge.merged_lead_ids:
            if what == "merged":
                mine = f"lead {other} merged into this lead: {merge.reason}"
                theirs = f"merged into lead {event.lead_id}: {merge.reason}"
            else:
                mine = f"lead {other} split off again (merge {merge.merge_id}, {merge.reason})"
                theirs = f"a lead of its own again, split off lead {event.lead_id} ({merge.reason})"
            work.notes += [
                IdentityNote(event.lead_id, f"{event.message_id}:{other}", event.timestamp,
                             what, mine, other),
                IdentityNote(other, event.message_id, event.timestamp,
                             "merged_into" if what == "merged" else what, theirs, event.lead_id),
            ]  # fmt: skip

    def _score(
        self,
        event: EnrichedEvent,
        lead: LeadRow,
        work: _Work,
        *,
        behaviour: bool,
        profile: bool = True,
        origin: str | None = None,
    ) -> None:
        """Score one message for `lead`. `origin`: the lead it was first counted under, when it
        is another (kept in the history, see `HistoryItem`)."""
        # A missing fact and a null one fail (and pass) the same tests: the nulls, about half
        # of an event's facts, are neither evaluated, nor kept in the picture or the history.
        own_facts = profile_facts_of(event)  # without nulls
        facts = _without_nulls(call_facts_of(event))
        facts.update(own_facts)  # = facts_of(event), the picture's part kept apart
        at = event.timestamp
        state = work.states[lead.lead_id]
        # Fit rules read only the profile side: when it is the one already scored under these
        # rules, they cannot change anything (most events of a lead). The facts are JSON
        # values (model dumps of strings, numbers and booleans), so they compare with the
        # stored ones as they are; a picture that differs only in form is scored again, which
        # changes nothing.
        same_facts = lead.picture is not None and lead.picture.facts == own_facts
        same_picture = same_facts and lead.rule_version == work.rules.version
        result = score_event(
            work.rules,
            state,
            facts,
            at=at,
            message_id=event.message_id,
            behaviour=behaviour and event.kind == "event",
            profile=profile and not same_picture,
        )
        as_of = max(lead.as_of or at, at)
        card = evaluate(work.rules, result.state, as_of)
        self._record(lead, result.lines, work)
        # The rules read the event's facts in full; what is kept of them is minimised (the IP
        # address and user agent only where a live rule reads them, the address truncated).
        # Whatever is derived for later (activity, first touch) reads what is kept, as its
        # rebuild from the history will.
        kept = stored_facts(facts, work.rules.personal_facts_read)
        work.history.append(
            (lead.lead_id, HistoryItem(event.message_id, at, kept, behaviour, profile, origin))
        )
        lead.identified = lead.identified or event.identified
        lead.engaged = lead.engaged or (behaviour and event.type in ENGAGEMENT_TYPES)
        lead.email = event.profile.email or lead.email
        if profile and event.lead_version >= lead.profile_version:
            # The same version with the same facts is the picture already kept (a version
            # names one picture, see `EnrichedEvent`): neither rebuilt nor written again.
            if not (same_facts and event.lead_version == lead.profile_version):
                lead.picture = LeadPicture.of(event, facts=_json_shaped(own_facts))
            lead.profile_version = event.lead_version
        if learned := learned_first_touch(lead.first_touch, kept):
            lead.first_touch = {**(lead.first_touch or {}), **learned}  # replaced, not changed
        changed = (card.fit, card.behaviour) != (lead.fit, lead.behaviour)
        before = lead.likelihood
        self._observe(lead, kept, at=at, behaviour=behaviour, work=work)
        self._predict(lead, card, result.state, as_of, work)  # before the card: MQL may read it
        self._apply_card(lead, card, as_of, work=work)
        # A merge can change the score without a ledger line of its own (folded history); a
        # 0-point line (a tally such as an email delivered, a capped award) changes nothing.
        # A likelihood may move on a message no rule counts (a page only the model knows).
        moved = _likelihood_moved(before, lead.likelihood)
        if changed or any(line.points for line in result.lines) or moved:
            contributions = [self._contribution(line) for line in result.lines]
            work.recent[lead.lead_id] = [*contributions, *work.recent.get(lead.lead_id, [])]
            work.outputs.append(
                self._scored(lead, event.message_id, card, contributions, event.received_at, work)
            )
        move = earned_move(
            lead.stage,
            identified=lead.identified,
            engaged=lead.engaged,
            qualifies=lead.qualifies,
            why_qualified=_why_qualified(card, work.rules, lead) if lead.qualifies else "",
        )
        if move is not None:
            self._transition(
                lead,
                move,
                trigger_id=event.message_id,
                at=at,
                received_at=event.received_at,
                card=card,
                work=work,
            )
        self._recycle_if_decayed(
            lead, card, as_of, trigger_id=event.message_id, received_at=event.received_at, work=work
        )

    # --- crm.feedback ---------------------------------------------------------------------

    async def _feedback(
        self,
        message: Message[BaseModel],
        feedback: CrmFeedback,
        work: _Work,
        session: AsyncSession,
    ) -> None:
        if feedback.feedback_id in work.feedback:
            return
        work.feedback.add(feedback.feedback_id)
        lead = work.leads.get(feedback.lead_id or "")
        if lead is None:
            await self._flush(work, session)
            lead = await repository.find_lead(session, feedback.lead_id or feedback.email or "")
            if lead is None and feedback.email:
                lead = await repository.find_lead(session, feedback.email)
            if lead is None:
                raise InvalidMessage(
                    message,
                    f"feedback {feedback.feedback_id}: no lead with id {feedback.lead_id!r}"
                    f" or email {feedback.email!r}",
                )
            found = await repository.load_leads(session, [lead.lead_id])
            work.leads.update(found)
            work.states.update(await repository.load_states(session, [lead.lead_id]))
            lead = work.leads[lead.lead_id]
        reason = f"CRM: {feedback.outcome}" + (f" ({feedback.reason})" if feedback.reason else "")
        decision = sales_move(
            lead.stage,
            feedback.outcome,
            reason=reason,
            at=feedback.at,
            latest_at=await repository.latest_sales_outcome_at(session, lead.lead_id),
        )
        FEEDBACK_RESULTS.labels(outcome=feedback.outcome, result=decision.result).inc()
        if decision.result == "refused":
            log.warning("feedback %s refused: %s", feedback.feedback_id, decision.detail)
        if decision.move is not None:
            card = evaluate(work.rules, work.states[lead.lead_id], lead.as_of or feedback.at)
            self._transition(
                lead,
                decision.move,
                trigger_id=feedback.feedback_id,
                at=feedback.at,
                received_at=feedback.at,
                card=card,
                work=work,
            )
        # Written now, not with the batch: the next outcome of this lead in the batch finds it.
        await repository.record_feedback(
            session,
            feedback_id=feedback.feedback_id,
            lead_id=lead.lead_id,
            outcome=feedback.outcome,
            result=decision.result,
            detail=decision.detail,
            at=feedback.at,
        )

    # --- score.commands -------------------------------------------------------------------

    def _reevaluate(self, command: ScoreCommand, work: _Work) -> None:
        lead = work.leads.get(command.lead_id)
        if lead is None or lead.merged_into is not None:
            return
        as_of = max(lead.as_of or command.at, command.at)
        state = work.states[lead.lead_id]
        card = evaluate(work.rules, state, as_of)
        changed = (card.fit, card.behaviour) != (lead.fit, lead.behaviour)
        before = lead.likelihood
        self._predict(lead, card, state, as_of, work)
        qualifies = work.rules.mql.qualifies(card.qualifies_as_mql, lead.likelihood)
        crossed = lead.qualifies and not qualifies and lead.as_of is not None
        if crossed and lead.stage == Stage.MQL and lead.below_line_since is None:
            # decay alone: it crossed the line between its last valuation and now
            assert lead.as_of is not None
            lead.below_line_since = fell_below_line(
                work.rules, state, since=lead.as_of, until=as_of
            )
        self._apply_card(lead, card, as_of, work=work)
        if changed or _likelihood_moved(before, lead.likelihood):
            work.outputs.append(self._scored(lead, command.command_id, card, [], command.at, work))
        self._recycle_if_decayed(
            lead, card, as_of, trigger_id=command.command_id, received_at=command.at, work=work
        )

    async def _rescore(self, command: ScoreCommand, work: _Work, session: AsyncSession) -> None:
        """Replay the lead's history under the running rules and replace its ledger. Applying
        it twice changes nothing: a lead already on these rules is left alone. Messages that
        came from a merged lead count for their behaviour only, as they did live."""
        lead = work.leads.get(command.lead_id)
        if lead is None or lead.merged_into is not None:
            return
        if lead.rule_version == work.rules.version:
            if lead.lead_id in work.rebuilt:  # after a model's publication: the likelihood
                as_of = lead.as_of or command.at
                card = evaluate(work.rules, work.states[lead.lead_id], as_of)
                self._predict(lead, card, work.states[lead.lead_id], as_of, work)
                if lead.likelihood is not None:
                    work.outputs.append(
                        self._scored(lead, command.command_id, card, [], command.at, work)
                    )
            return
        if lead.lead_id in work.histories and not work.flushed:
            # stored history, then what this batch scored for the lead and has not written
            items = work.histories[lead.lead_id] + [
                item for lead_id, item in work.history if lead_id == lead.lead_id
            ]
        else:
            await self._flush(work, session)
            items = (await repository.load_histories(session, [lead.lead_id]))[lead.lead_id]
        card = self._replay(
            lead, items, work, trigger_id=command.command_id, at=command.at, rescore=True
        )
        move = earned_move(
            lead.stage,
            identified=lead.identified,
            engaged=lead.engaged,
            qualifies=lead.qualifies,
            why_qualified=f"rules {work.rules.version}: " + _why_qualified(card, work.rules, lead),
        )
        if move is not None:
            self._transition(lead, move, trigger_id=command.command_id, at=command.at,
                             received_at=command.at, card=card, work=work)  # fmt: skip

    # --- privacy.erasures -----------------------------------------------------------------

    async def _erase(
        self,
        message: Message[BaseModel],
        notice: ErasureNotice,
        work: _Work,
        session: AsyncSession,
    ) -> None:
        """Erase the notice's leads (`erasure.erase_leads`), under the lead locks the batch took
        for them as it loaded (a batch of another replica scoring one of them either committed
        before, and its rows are erased here, or waits and then finds the lead erased), record
        them as erased in the same transaction, and report. What the batch collected before the
        notice is written first, and erased with the rest; the outputs it collected for these
        leads are not sent (their erasure is committed with them), and their later messages in
        the batch are dropped. A redelivered notice erases nothing and reports again."""
        await self._flush(work, session)
        ids = set(notice.lead_ids)
        # Taken in `_load` with the batch's other locks (in one ordered statement): again here,
        # a no-op then, so that an erasure never runs without them.
        await repository.lock_leads(session, ids)
        erased, anonymised = await erase_leads(session, sorted(ids))
        await ERASED_LEADS.remember(session, ids)
        for lead_id in ids:
            work.leads.pop(lead_id, None)
            work.states.pop(lead_id, None)
            work.histories.pop(lead_id, None)
            work.recent.pop(lead_id, None)
            work.likelihoods.pop(lead_id, None)
        work.scored = {key for key in work.scored if key[0] not in ids}
        work.rebuilt -= ids
        work.erased |= ids
        work.outputs = [
            output
            for output in work.outputs
            if not (output.topic in (LEADS_SCORED, LEADS_LIFECYCLE) and output.key in ids)
        ]
        report = erasure_report(
            notice, service="score", erased=erased, anonymised=anonymised, at=datetime.now(UTC)
        )
        work.outputs.append(replace(report, source=message))
        log.info(
            "erasure %s of %d leads: %s",
            notice.request_id,
            len(ids),
            ", ".join(f"{table} {count}" for table, count in erased.items() if count)
            or "score held no rows of them",
        )

    # --- shared steps ---------------------------------------------------------------------

    def _replay(
        self,
        lead: LeadRow,
        items: Sequence[HistoryItem],
        work: _Work,
        *,
        trigger_id: str,
        at: datetime,
        rescore: bool = False,
    ) -> ScoreCard:
        """Score `lead` again from `items`, its whole history, under the running rules: its
        ledger is replaced (lines of this batch not yet written are replayed too), and whether
        it is identified and engaged follows the history. Emits its score; returns its card.

        The history is what is left of it (`housekeeping`: kept for a time). A lead none of
        whose own messages is left is replayed from its kept picture first, so it keeps its
        fit (`rescoring.with_kept_picture`; fit lines under `<trigger_id>:picture`). A
        `rescore` replays the messages the live path scored, less those past retention, so
        what they showed stays shown: a rescored lead stays identified and engaged."""
        if lead.lead_id in work.unwritten_lines:
            work.ledger = [entry for entry in work.ledger if entry[0] != lead.lead_id]
        work.replaced.add(lead.lead_id)
        work.states[lead.lead_id] = state = ScoreState()
        picture = lead.picture.facts if lead.picture is not None else None
        replaying = with_kept_picture(
            items, picture, message_id=f"{trigger_id}:picture", at=lead.as_of or at
        )
        for result in replayed(work.rules, replaying):
            self._record(lead, result.lines, work)
            state = result.state
        identified = any(item.facts.get("identified") is True for item in items)
        engaged = any(
            item.behaviour and item.facts.get("type") in ENGAGEMENT_TYPES for item in items
        )
        lead.identified = identified or (rescore and lead.identified)
        lead.engaged = engaged or (rescore and lead.engaged)
        as_of = lead.as_of or at
        card = evaluate(work.rules, state, as_of)
        self._predict(lead, card, state, as_of, work)
        self._apply_card(lead, card, as_of, work=work, rescored=True)
        work.outputs.append(self._scored(lead, trigger_id, card, [], at, work))
        return card

    @staticmethod
    def _observe(
        lead: LeadRow, facts: Facts, *, at: datetime, behaviour: bool, work: _Work
    ) -> None:
        """Add a scored message to the lead's activity, kept only while a model is live (and
        forgotten otherwise: a later model rebuilds it from the history)."""
        if work.model is None:
            lead.activity, lead.model_version, lead.likelihood = None, None, None
            return
        version, scorer = work.model
        if lead.activity is None or lead.model_version != version:
            # a lead new to score (a stored one was rebuilt when the batch loaded it)
            lead.activity, lead.model_version = Activity(), version
        lead.activity.observe(facts, at=at, behaviour=behaviour, keep_s=scorer.keep_s)

    @staticmethod
    def _predict(
        lead: LeadRow, card: ScoreCard, state: ScoreState, as_of: datetime, work: _Work
    ) -> None:
        """The lead's likelihood under the batch's model, as of `as_of`: identified leads only
        (an anonymous visitor is no lead to rank)."""
        if work.model is None or lead.activity is None or not lead.identified:
            lead.likelihood = None
            return
        version, scorer = work.model
        likelihood = scorer.lead_likelihood(
            lead.activity,
            lead.picture.facts if lead.picture is not None else {},
            card=card,
            state=state,
            at=as_of,
            version=version,
        )
        lead.likelihood = likelihood.probability
        work.likelihoods[lead.lead_id] = likelihood

    def _record(self, lead: LeadRow, lines: Sequence[LedgerLine], work: _Work) -> None:
        """Add a message's ledger lines to the batch's writes and to the lead's state."""
        if not lines:
            return
        work.ledger += [(lead.lead_id, line) for line in lines]
        work.unwritten_lines.add(lead.lead_id)
        work.states[lead.lead_id] = recorded(work.states[lead.lead_id], lines)

    @staticmethod
    def _apply_card(
        lead: LeadRow, card: ScoreCard, as_of: datetime, *, work: _Work, rescored: bool = False
    ) -> None:
        lead.fit, lead.behaviour, lead.total = card.fit, card.behaviour, card.total
        lead.grade, lead.band = card.grade, card.band
        # the score thresholds, and the likelihood's when the rules ask (`_predict` ran before)
        lead.qualifies = work.rules.mql.qualifies(card.qualifies_as_mql, lead.likelihood)
        lead.as_of = as_of
        # The lead's version says which rules made its whole ledger: a new lead's are the
        # running ones; a lead scored before a rules change keeps the old version, though new
        # lines follow the new rules, until the rescore sweep has it rescored.
        if rescored or not lead.rule_version:
            lead.rule_version = work.rules.version
        if lead.stage != Stage.MQL or lead.qualifies:
            lead.below_line_since = None
        elif lead.below_line_since is None:
            lead.below_line_since = as_of

    def _recycle_if_decayed(
        self,
        lead: LeadRow,
        card: ScoreCard,
        as_of: datetime,
        *,
        trigger_id: str,
        received_at: datetime,
        work: _Work,
    ) -> None:
        since = lead.below_line_since
        grace = timedelta(days=work.rules.lifecycle.recycle_after_days_below)
        if lead.stage != Stage.MQL or since is None or as_of - since < grace:
            return
        move = apply(
            lead.stage,
            Trigger.DECAYED,
            f"score below the MQL line since {since:%Y-%m-%d} "
            f"({work.rules.lifecycle.recycle_after_days_below:g} days allowed)",
        )
        self._transition(
            lead,
            move,
            trigger_id=trigger_id,
            # when it became due: a lead valued long after (a backfilled history) is recycled
            # at the time it was, and the router leaves a move that old as history
            at=since + grace,
            received_at=received_at,
            card=card,
            work=work,
        )

    def _transition(
        self,
        lead: LeadRow,
        move: Transition,
        *,
        trigger_id: str,
        at: datetime,
        received_at: datetime,
        card: ScoreCard,
        work: _Work,
    ) -> None:
        change = StageChange(
            transition_id=f"{lead.lead_id}:{move.to_stage.value}:{trigger_id}",
            lead_id=lead.lead_id,
            from_stage=move.from_stage,
            to_stage=move.to_stage,
            reason=move.reason,
            at=at,
            by_sales=move.by_sales,
            skipped=move.skipped,
            rule_version=work.rules.version,
        )
        work.stage_changes.append(change)
        lead.stage = move.to_stage
        if lead.stage != Stage.MQL:
            lead.below_line_since = None
        picture = lead.picture or LeadPicture()
        work.outputs.append(
            Output(
                LEADS_LIFECYCLE,
                key=lead.lead_id,
                value=LifecycleChanged(
                    transition_id=change.transition_id,
                    lead_id=lead.lead_id,
                    from_stage=move.from_stage,
                    to_stage=move.to_stage,
                    reason=move.reason,
                    at=at,
                    received_at=received_at,
                    by_sales=move.by_sales,
                    skipped_stages=list(move.skipped),
                    profile=picture.profile,
                    consent=picture.consent,
                    firmographics=picture.firmographics,
                    account=picture.account,
                    account_id=picture.account_id,
                    score=self._score_of(card),
                    top_contributions=sorted(
                        work.recent.get(lead.lead_id, []), key=lambda c: -abs(c.points)
                    )[:TOP_CONTRIBUTIONS],
                    likelihood=_likelihood_of(lead, work),
                    first_touch=first_touch_part(lead.first_touch),
                    rule_version=work.rules.version,
                ),
            )
        )

    @staticmethod
    def _contribution(line: LedgerLine) -> Contribution:
        return _cached_contribution(line.rule_id, line.points, line.reason)

    @staticmethod
    def _score_of(card: ScoreCard) -> Score:
        return _cached_score(
            card.fit, card.behaviour, card.total, card.grade, card.band, card.priority
        )

    def _scored(
        self,
        lead: LeadRow,
        message_id: str,
        card: ScoreCard,
        contributions: list[Contribution],
        received_at: datetime,
        work: _Work,
    ) -> Output:
        return Output(
            LEADS_SCORED,
            key=lead.lead_id,
            value=LeadScored(
                lead_id=lead.lead_id,
                message_id=message_id,
                score=self._score_of(card),
                contributions=contributions,
                rule_version=work.rules.version,
                scored_at=datetime.now(UTC),
                received_at=received_at,
                likelihood=_likelihood_of(lead, work),
            ),
        )


LIKELIHOOD_STEP = 0.01
"""A likelihood that moved less than this (one percentage point) is no news worth a message of
its own on `leads.scored`: the windows of a lead's behaviour move it a little with every event."""


def _likelihood_moved(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        return before is not after
    return abs(after - before) >= LIKELIHOOD_STEP


def _likelihood_of(lead: LeadRow, work: _Work) -> Likelihood | None:
    """The lead's likelihood as this batch last computed it; None when it has none (no model,
    an anonymous lead, or none computed in this batch)."""
    return work.likelihoods.get(lead.lead_id) if lead.likelihood is not None else None


def _why_qualified(card: ScoreCard, rules: RuleSet, lead: LeadRow) -> str:
    mql = rules.mql
    parts = [f"priority {card.priority}", f"total {card.total}"]
    if mql.min_total is not None:
        parts[-1] += f" >= {mql.min_total}"
    if mql.min_fit is not None:
        parts.append(f"fit {card.fit} >= {mql.min_fit}")
    if mql.min_behaviour is not None:
        parts.append(f"behaviour {card.behaviour} >= {mql.min_behaviour}")
    if mql.min_likelihood is not None and lead.likelihood is not None:
        parts.append(f"likelihood {lead.likelihood:.0%} >= {mql.min_likelihood:.0%}")
    return "MQL: " + ", ".join(parts)


def _without_nulls(facts: Facts) -> Facts:
    return {key: value for key, value in facts.items() if value is not None}


def _json_shaped(facts: Facts) -> dict[str, Any]:
    """The facts as they come back from the database (JSON types)."""
    return cast(dict[str, Any], orjson.loads(orjson.dumps(facts, default=str)))


def _lead_id_of(value: BaseModel) -> str | None:
    """The lead a consumed message is about (None: a CRM outcome by email alone)."""
    if isinstance(value, EnrichedEvent | CrmFeedback | ScoreCommand):
        return value.lead_id
    return None
