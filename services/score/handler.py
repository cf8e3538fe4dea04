"""The consumer handler: `events.enriched` -> `leads.scored` (+ `leads.lifecycle`).

Per batch: lock the states of every lead in it (one query), apply events in consumption order
(per lead that is event order: events are keyed by lead), then write the ledger rows, stage
changes and states. Emits one `LeadScored` per event that earned points and one
`LifecycleChanged` per stage move, with ids derived from the triggering message so a replay
produces the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.score import repository
from services.score.domain import LeadState, advance_stage, score_event, score_of
from services.score.repository import LedgerEntry, StageChange
from services.score.rules import RuleSet
from shared.consumer import Message, Output
from shared.contracts import Contribution, EnrichedEvent, LeadScored, LifecycleChanged
from shared.topics import LEADS_LIFECYCLE, LEADS_SCORED


class ScoreHandler:
    def __init__(self, rules: RuleSet) -> None:
        self._rules = rules

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        events = [m.value for m in messages if isinstance(m.value, EnrichedEvent)]
        states = await repository.get_lead_states(session, (e.lead_id for e in events))
        now = datetime.now(UTC)
        outputs: list[Output] = []
        ledger: list[LedgerEntry] = []
        stage_changes: list[StageChange] = []
        recent: dict[str, list[Contribution]] = {}
        for event in events:
            state = states.get(event.lead_id) or LeadState(lead_id=event.lead_id)
            change = score_event(state, event, self._rules)
            state = change.state
            score = score_of(state, self._rules)
            if change.contributions:
                recent[event.lead_id] = [*change.contributions, *recent.get(event.lead_id, [])]
                ledger += [
                    LedgerEntry(
                        lead_id=event.lead_id,
                        message_id=event.message_id,
                        rule_id=c.rule_id,
                        points=c.points,
                        rule_version=self._rules.version,
                        event_time=event.timestamp,
                    )
                    for c in change.contributions
                ]
                outputs.append(
                    Output(
                        LEADS_SCORED,
                        key=event.lead_id,
                        value=LeadScored(
                            lead_id=event.lead_id,
                            message_id=event.message_id,
                            score=score,
                            contributions=list(change.contributions),
                            rule_version=self._rules.version,
                            scored_at=now,
                            received_at=event.received_at,
                        ),
                    )
                )
            move = advance_stage(
                state.stage,
                identified=event.identified,
                engaged=state.engaged,
                total=state.total,
                rules=self._rules,
            )
            if move is not None:
                state = replace(state, stage=move.to_stage)
                transition = StageChange(
                    transition_id=f"{event.lead_id}:{move.to_stage.value}:{event.message_id}",
                    lead_id=event.lead_id,
                    from_stage=move.from_stage,
                    to_stage=move.to_stage,
                    reason=move.reason,
                    at=event.timestamp,
                )
                stage_changes.append(transition)
                outputs.append(
                    Output(
                        LEADS_LIFECYCLE,
                        key=event.lead_id,
                        value=LifecycleChanged(
                            transition_id=transition.transition_id,
                            lead_id=event.lead_id,
                            from_stage=move.from_stage,
                            to_stage=move.to_stage,
                            reason=move.reason,
                            at=event.timestamp,
                            received_at=event.received_at,
                            profile=event.profile,
                            consent=event.consent,
                            account_id=event.account_id,
                            score=score,
                            top_contributions=sorted(
                                recent.get(event.lead_id, []), key=lambda c: -abs(c.points)
                            )[:5],
                        ),
                    )
                )
            states[event.lead_id] = state
        await repository.add_to_ledger(session, ledger)
        await repository.record_stage_changes(session, stage_changes)
        await repository.save_lead_states(
            session, [states[lead_id] for lead_id in {e.lead_id for e in events}]
        )
        return outputs
