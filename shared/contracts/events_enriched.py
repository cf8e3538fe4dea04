"""`events.enriched`: what enrich knows about a lead, one message per event or lead change.

Key: lead_id. Every message carries the lead's full, current picture (normalised profile,
firmographics with their sources, matched account, consent, stage) and a `lead_version` that grows
with every change of that picture, so a consumer never needs a lookup and can ignore a picture
older than one it already holds (messages of one lead can come from different enrich processes).

How score (and any other consumer) treats each `kind`:

- `event`: a tracking call attributed to `lead_id`. Count it once per (`lead_id`, `message_id`).
  When `attributed_from` is set, it is anonymous history re-emitted under the known lead it now
  belongs to: `message_id` is the original call's id and `attributed_from.lead_id` the anonymous
  lead it was first emitted under. Count it under `lead_id` (once, by the same key); enrich
  re-emits each anonymous event at most once, in the original order, before the `merged` message
  that retires the anonymous lead.
- `profile_updated`: the picture changed without a call (firmographics arrived later, an unmerge
  restored a lead). Re-evaluate profile (fit) rules only; never behaviour rules.
- `merged`: `merge.merged_lead_ids` are the same person as `lead_id` (the survivor) and will not
  appear again unless unmerged. If `merge.history_replayed`, their behaviour was re-emitted as
  attributed `event`s: drop their state without adding it. Otherwise (two known leads) fold their
  state into the survivor (behaviour adds up, fit is recomputed from the survivor's profile).
- `unmerged`: an operator reversed `merge.merge_id`; `merge.merged_lead_ids` are people of their
  own again (a `profile_updated` for each follows, keyed by its own lead_id), and the message
  carries the survivor's picture without what the merge gave it. What the merge folded into the
  survivor goes back: every message counted under the survivor because it came from a merged
  lead (`attributed_from`, or folded in by the merge) counts for that lead again, and both leads
  are scored again from their own messages. Messages that reached the survivor while the two were
  merged stay the survivor's.

`identity_refusals` (on an `event`): identities of the call that enrich did not link to this
lead because a guardrail refused (`IdentityRefusal`); the call still counts for `lead_id`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from shared.contracts.base import AwareDatetime, Contract, Part
from shared.contracts.events_raw import CallType

Seniority = Literal[
    "c-level", "vp", "director", "manager", "individual contributor", "student/intern"
]
JobFunction = Literal[
    "executive",
    "sales",
    "marketing",
    "engineering",
    "product",
    "finance",
    "hr",
    "operations",
    "it",
    "customer success",
    "legal",
    "data",
    "design",
    "education",
    "other",
]
StageSoFar = Literal["anonymous", "known"]
EventKind = Literal["event", "profile_updated", "merged", "unmerged"]


class Consent(Part):
    """What the lead allowed. Travels with every event so no service contacts an opted-out lead.

    `email_opt_out`: no marketing email (an `Unsubscribed` track, `traits.unsubscribed`, or the
    suppression list). `suppressed`: on the suppression list (by email or domain): contact through
    no channel, route nowhere. Consent is only ever withdrawn by events, never granted back.
    """

    email_opt_out: bool = False
    suppressed: bool = False
    reasons: list[str] = Field(default_factory=list)


class LeadProfile(Part):
    """The lead as enrich knows it after this event (normalised traits).

    email: lower-case, valid; phone: E.164; country: ISO 3166 alpha-2; company_domain: from a work
    email, else from the website trait (never from a free-mail or disposable address).
    """

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    company_domain: str | None = None
    phone: str | None = None
    country: str | None = None
    seniority: Seniority | None = None
    job_function: JobFunction | None = None
    free_mail: bool = False
    disposable_email: bool = False


class Firmographics(Part):
    """Company facts from an enrichment provider, keyed by the company's domain."""

    domain: str
    company_name: str | None = None
    employee_count: int | None = Field(default=None, ge=0)
    size_band: str | None = Field(default=None, description="e.g. 1-10, 11-50, ..., 10001+")
    industry: str | None = None
    annual_revenue_usd: int | None = Field(default=None, ge=0)
    revenue_band: str | None = Field(default=None, description="e.g. <1M, 1M-10M, ..., 1B+")
    country: str | None = None
    sources: dict[str, str] = Field(
        default_factory=dict, description="field name -> provider that supplied it"
    )


class AccountMatch(Part):
    """The existing customer or target account a lead belongs to, with how sure we are.

    `strong`: the email / website domain is the account's domain, or the normalised company names
    are equal. `weak`: a fuzzy name match above the threshold. `evidence` says which.
    """

    account_id: str
    name: str
    type: Literal["customer", "target"]
    owner_id: str | None = None
    owner_email: str | None = None
    confidence: Literal["strong", "weak"]
    method: Literal["email_domain", "website_domain", "company_name"]
    score: float = Field(ge=0, le=100)
    evidence: str


class AttributedFrom(Part):
    """Where a re-attributed anonymous event was first emitted."""

    lead_id: str
    anonymous_id: str | None = None


class IdentityRefusal(Part):
    """An identity of the call that enrich did not link to `lead_id`, and why (a guardrail).

    `kind`: which identity (its value is never carried); `reason`: `another_user_id` (it belongs
    to `other_lead_id`, a lead with another userId), `anonymous_id_limit` (anonymousIds per week),
    `placeholder_previous_id` (an alias whose previousId names nobody); `detail`: in words."""

    kind: Literal["user_id", "email", "anonymous_id"]
    reason: Literal["another_user_id", "anonymous_id_limit", "placeholder_previous_id"]
    other_lead_id: str | None = None
    detail: str


class MergeInfo(Part):
    """`reason` in words; `aliased`: an alias call joined the leads (two userIds for one person),
    rather than an identity they shared."""

    merge_id: str
    surviving_lead_id: str
    merged_lead_ids: list[str] = Field(min_length=1)
    reason: str
    history_replayed: bool = False
    aliased: bool = False


class EnrichedEvent(Contract):
    """A message about one lead on `events.enriched` (see the module doc for each `kind`).

    `identified`/`stage`: the anonymous -> known decision belongs to enrich (first userId or email)
    and travels here. `received_at` is the original ingest time, carried so the router can measure
    speed-to-lead. `type` (the Segment call type) is set exactly when `kind` is `event`.
    """

    schema_version: Literal[1] = 1
    kind: EventKind = "event"
    message_id: str = Field(min_length=1)
    lead_id: str = Field(min_length=1)
    lead_version: int = Field(default=0, ge=0)
    type: CallType | None = None
    event: str | None = None
    name: str | None = None
    source: str
    timestamp: AwareDatetime
    received_at: AwareDatetime
    identified: bool
    stage: StageSoFar = "anonymous"
    profile: LeadProfile = Field(default_factory=LeadProfile)
    firmographics: Firmographics | None = None
    firmographics_pending: bool = Field(
        default=False, description="the provider failed; a profile_updated follows when it answers"
    )
    account: AccountMatch | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    account_id: str | None = Field(default=None, description="account.account_id, for convenience")
    consent: Consent = Field(default_factory=Consent)
    attributed_from: AttributedFrom | None = None
    merge: MergeInfo | None = None
    identity_refusals: list[IdentityRefusal] = Field(default_factory=list)

    @model_validator(mode="after")
    def _kind_is_consistent(self) -> EnrichedEvent:
        if (self.kind == "event") != (self.type is not None):
            raise ValueError("type is set exactly when kind is 'event'")
        if (self.kind in ("merged", "unmerged")) != (self.merge is not None):
            raise ValueError("merge is set exactly when kind is 'merged' or 'unmerged'")
        if self.attributed_from is not None and self.kind != "event":
            raise ValueError("only an event can be attributed from an anonymous lead")
        return self
