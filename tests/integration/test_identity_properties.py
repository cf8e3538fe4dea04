"""enrich's identity resolution as a property, at the handler against the real PostgreSQL (no
broker): random interleavings of lead-list imports, website identifies, alias calls and anonymous
page views, split into random batches (so that calls resolve both within a batch and against
what earlier batches stored).

What the code guarantees, asserted after every batch over the example's leads:

1. An email identity names one lead (its primary key), so two live (not merged) identified leads
   show one address (`enrich.leads.email`, or the `profile.email` of each lead's last enriched
   message) only when a guardrail refused it to one of them, and said so: a lead whose address
   is another lead's identity carries, on an `event` emitted for it (or for a lead merged into it
   since), an `identity_refusals` entry of kind "email" for a call with that address, whose
   `other_lead_id` is (or was merged into) the lead the email identity names now.
2. A call without a userId of its own (none, or its email as the userId: older lead lists) is
   never refused its email: it finds the lead the email names (`identity`'s email-derived userIds).
   Holds here because website userIds never look like an email.
3. Every identity names a stored lead that is not merged (a merge moves them to the survivor).
   That no identity appears twice is the primary key's (kind, value): not asserted.

Examples share the test's database: each example's ids and addresses carry a token of its own,
and only the leads its calls named are looked at.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import asyncpg
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.references import References
from shared.contracts import EnrichedEvent, RawEvent
from tests.fixtures.enrich import PRIVACY_KEY, handle
from tests.unit.builders import NOW, identify, raw_event

USER_IDS = ("u1", "u2", "u3", "u4")
EMAILS = ("ada", "bo", "cy")  # local parts, at one company domain
ANONYMOUS_IDS = ("a1", "a2", "a3", "a4")
ANONYMOUS_IDS_PER_WEEK = 3  # below the pool's four: the weekly limit is reached too
EMAIL_AS_USER_ID = "=email"  # an older lead list's row: its userId is the email itself


@dataclass(frozen=True)
class Import:
    """A lead-list row: an identify call with `context.import` and `traits.email`; `user_id`
    None (today's lists without a user id column), `EMAIL_AS_USER_ID`, or the list's column."""

    email: str
    user_id: str | None


@dataclass(frozen=True)
class Identify:
    """A website identify call (a userId or an anonymousId at least, as Segment requires)."""

    user_id: str | None
    email: str | None
    anonymous_id: str | None


@dataclass(frozen=True)
class Alias:
    previous_id: str  # a userId or an anonymousId of the pools
    user_id: str


@dataclass(frozen=True)
class Visit:
    """A page view or track call of an anonymous visitor."""

    anonymous_id: str
    call: Literal["page", "track"]


Step = Import | Identify | Alias | Visit

STEPS = st.one_of(
    st.builds(
        Import,
        email=st.sampled_from(EMAILS),
        user_id=st.one_of(st.none(), st.just(EMAIL_AS_USER_ID), st.sampled_from(USER_IDS)),
    ),
    # A userId or an anonymousId at least, as Segment requires; most often a signed-in form.
    st.builds(
        Identify,
        user_id=st.sampled_from(USER_IDS),
        email=st.sampled_from(EMAILS),
        anonymous_id=st.none() | st.sampled_from(ANONYMOUS_IDS),
    ),
    st.builds(
        Identify,
        user_id=st.sampled_from(USER_IDS),
        email=st.none() | st.sampled_from(EMAILS),
        anonymous_id=st.none() | st.sampled_from(ANONYMOUS_IDS),
    ),
    st.builds(
        Identify,
        user_id=st.none(),
        email=st.none() | st.sampled_from(EMAILS),
        anonymous_id=st.sampled_from(ANONYMOUS_IDS),
    ),
    st.builds(
        Alias,
        previous_id=st.sampled_from(USER_IDS + ANONYMOUS_IDS),
        user_id=st.sampled_from(USER_IDS),
    ),
    st.builds(
        Visit, anonymous_id=st.sampled_from(ANONYMOUS_IDS), call=st.sampled_from(["page", "track"])
    ),
)
BATCHES = st.lists(st.lists(STEPS, min_size=1, max_size=4), min_size=2, max_size=12)

_examples = itertools.count()  # a token per example: its ids are its own in the shared database


@dataclass(frozen=True)
class Call:
    """A generated call as sent, and what the oracle needs of it."""

    step: Step
    event: RawEvent
    email: str | None  # the address it carries, as enrich normalises it
    own_user_id: bool  # a userId that is not its email


def call_of(step: Step, *, token: str, n: int) -> Call:
    """Call number `n` of an example, one second after the one before; its message id, ids and
    address are the example's own (`token`)."""
    at = NOW + timedelta(seconds=n)
    sent = {"message_id": f"{token}-{n}", "timestamp": at, "received_at": at}

    def scoped(name: str | None) -> str | None:
        return None if name is None else f"{name}.{token}"

    def mailbox(local: str | None) -> str | None:
        return None if local is None else f"{local}.{token}@initech.com"

    match step:
        case Import(email=local, user_id=user_id):
            email = mailbox(local)
            listed = {"id": f"import-{token}", "list": "webinar", "row": n + 2}
            event = identify(
                **sent,
                source="webinar",
                anonymous_id=None,
                user_id=email if user_id == EMAIL_AS_USER_ID else scoped(user_id),
                traits={"email": email},
                context={"import": listed},
            )
            own = user_id not in (None, EMAIL_AS_USER_ID)
            return Call(step=step, event=event, email=email, own_user_id=own)
        case Identify(user_id=user_id, email=local, anonymous_id=anonymous_id):
            email = mailbox(local)
            event = identify(
                **sent,
                user_id=scoped(user_id),
                anonymous_id=scoped(anonymous_id),
                traits={} if email is None else {"email": email},
            )
            return Call(step=step, event=event, email=email, own_user_id=user_id is not None)
        case Alias(previous_id=previous_id, user_id=user_id):
            event = raw_event(
                **sent,
                type="alias",
                previous_id=scoped(previous_id),
                user_id=scoped(user_id),
                anonymous_id=None,
            )
            return Call(step=step, event=event, email=None, own_user_id=True)
        case Visit(anonymous_id=anonymous_id, call=call):
            named = {"name": "/pricing"} if call == "page" else {"event": "Pricing Viewed"}
            event = raw_event(**sent, **named, type=call, anonymous_id=scoped(anonymous_id))
            return Call(step=step, event=event, email=None, own_user_id=False)


def handler() -> EnrichHandler:
    return EnrichHandler(
        provider=None,
        references=References(),
        policy=EnrichPolicy(anonymous_ids_per_week=ANONYMOUS_IDS_PER_WEEK),
        privacy_key=PRIVACY_KEY,
    )


@dataclass(frozen=True)
class Stored:
    """The example's leads and identities as stored."""

    merged_into: dict[str, str | None]  # lead_id -> the lead it was merged into
    emails: dict[str, str | None]  # live identified lead -> enrich.leads.email
    identities: list[asyncpg.Record]  # kind, value, lead_id, stored, merged_into

    def live(self, lead_id: str) -> str:
        """The lead `lead_id` is now: itself, or the survivor of the merges it went into."""
        while (survivor := self.merged_into.get(lead_id)) is not None:
            lead_id = survivor
        return lead_id


async def stored(db: asyncpg.Connection, *, token: str, lead_ids: Sequence[str]) -> Stored:
    leads = await db.fetch(
        "SELECT lead_id, email, identified, merged_into FROM enrich.leads"
        " WHERE lead_id = ANY($1::text[])",
        sorted(set(lead_ids)),
    )
    identities = await db.fetch(
        """
        SELECT link.kind, link.value, link.lead_id, lead.lead_id IS NOT NULL AS stored,
               lead.merged_into
        FROM enrich.identities AS link
        LEFT JOIN enrich.leads AS lead ON lead.lead_id = link.lead_id
        WHERE position($1 IN link.value) > 0
        ORDER BY link.kind, link.value
        """,
        f".{token}",
    )
    return Stored(
        merged_into={row["lead_id"]: row["merged_into"] for row in leads},
        emails={
            row["lead_id"]: row["email"]
            for row in leads
            if row["merged_into"] is None and row["identified"]
        },
        identities=list(identities),
    )


def unexplained_emails(
    emails: Mapping[str, str | None],
    *,
    now: Stored,
    calls: Mapping[str, Call],
    emitted: Sequence[EnrichedEvent],
) -> list[str]:
    """Invariant 1 over `emails` (live identified lead -> its address): why each address that is
    another lead's identity is not explained by a recorded email refusal, if it is not."""
    owners = {row["value"]: row["lead_id"] for row in now.identities if row["kind"] == "email"}
    refused = {
        (
            now.live(message.lead_id),
            calls[message.message_id].email,
            now.live(refusal.other_lead_id),
        )
        for message in emitted
        if message.kind == "event" and message.attributed_from is None
        for refusal in message.identity_refusals
        if refusal.kind == "email" and refusal.other_lead_id is not None
    }
    calls_of: dict[str, list[str]] = {}
    for message in emitted:
        if message.kind == "event" and message.attributed_from is None:
            calls_of.setdefault(now.live(message.lead_id), []).append(message.message_id)

    def named(lead_id: str) -> str:
        return f"lead {lead_id} (calls {', '.join(calls_of.get(lead_id, []))})"

    problems = []
    for lead_id, email in sorted(emails.items()):
        if email is None:
            continue
        owner = owners.get(email)
        if owner is None:
            problems.append(f"{named(lead_id)} shows {email}, which is no lead's email identity")
        elif owner != lead_id and (lead_id, email, now.live(owner)) not in refused:
            problems.append(
                f"{named(lead_id)} shows {email}, an email identity of {named(owner)} which"
                f" shows {emails.get(owner)}; no event of the first carries an email refusal"
                " naming the second"
            )
    return problems


def check_after_batch(
    now: Stored, *, calls: Mapping[str, Call], emitted: Sequence[EnrichedEvent]
) -> None:
    """The module docstring's invariants 1-3."""
    # 1. An address a lead shows that is another lead's identity is a recorded refusal, in the
    # table and in the last message of each lead.
    last = {message.lead_id: message for message in emitted}
    shown = {lead_id: last[lead_id].profile.email for lead_id in now.emails}
    for source, emails in (("enrich.leads.email", now.emails), ("last message", shown)):
        problems = unexplained_emails(emails, now=now, calls=calls, emitted=emitted)
        assert not problems, f"{source}:\n" + "\n".join(problems)

    # 2. A call without a userId of its own finds the lead its email names.
    refused_without_user_id = [
        f"{message.message_id} {calls[message.message_id].step}: {message.identity_refusals}"
        for message in emitted
        if message.kind == "event"
        and message.attributed_from is None
        and not calls[message.message_id].own_user_id
        and any(refusal.kind == "email" for refusal in message.identity_refusals)
    ]
    assert not refused_without_user_id, (
        "calls without a userId of their own were refused their email:\n"
        + "\n".join(refused_without_user_id)
    )

    # 3. Identities name stored, live leads.
    misplaced = [
        f"{row['kind']} {row['value']} -> lead {row['lead_id']}"
        + (" (not stored)" if not row["stored"] else f" (merged into {row['merged_into']})")
        for row in now.identities
        if not row["stored"] or row["merged_into"] is not None
    ]
    assert not misplaced, "identities that name no live lead:\n" + "\n".join(misplaced)


PATHS = ("an address shown by two live leads", "an email refused", "leads merged", "leads aliased")


def paths_reached(now: Stored, emitted: Sequence[EnrichedEvent]) -> set[str]:
    """Which `PATHS` an example has gone through so far: with `--hypothesis-show-statistics`,
    how often the exception of invariant 1 (a shared address) and the paths to it are reached."""
    shown = [email for email in now.emails.values() if email]
    refusals = [refusal for message in emitted for refusal in message.identity_refusals]
    merges = [message.merge for message in emitted if message.merge is not None]
    reached = {
        PATHS[0]: len(shown) != len(set(shown)),
        PATHS[1]: any(refusal.kind == "email" for refusal in refusals),
        PATHS[2]: bool(merges),
        PATHS[3]: any(merge.aliased for merge in merges),
    }
    return {path for path, taken in reached.items() if taken}


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run (CI, a developer's machine)
    database=None,
    # `sessions` and `db` are shared by the examples: each example's ids are its own (a token).
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=BATCHES)
async def test_an_email_shared_by_two_live_leads_is_always_a_recorded_refusal(
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
    batches: list[list[Step]],
) -> None:
    token = f"t{next(_examples):05d}"  # fixed width: no token is a part of another
    enrich = handler()  # its lead cache starts empty, as a fresh process's
    calls: dict[str, Call] = {}
    emitted: list[EnrichedEvent] = []
    numbers = itertools.count()
    reached: set[str] = set()
    for steps in batches:
        batch = [call_of(step, token=token, n=next(numbers)) for step in steps]
        # A failure lists the example this way (hypothesis shows a test that takes fixtures
        # with empty arguments).
        note(f"batch: {[(call.event.message_id, call.step) for call in batch]}")
        calls.update((call.event.message_id, call) for call in batch)
        emitted += await handle(sessions, enrich, [call.event for call in batch])
        now = await stored(db, token=token, lead_ids=[message.lead_id for message in emitted])
        check_after_batch(now, calls=calls, emitted=emitted)
        reached |= paths_reached(now, emitted)
    for path in PATHS:
        event(f"{path}: {path in reached}")
