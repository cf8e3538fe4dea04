"""An identify call whose name looks like a spreadsheet formula reaches `events.enriched` (and
so routing decisions) defused, as a lead-list import stores it (issue "Hardening")."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.references import References
from shared.consumer import Message
from shared.contracts import EnrichedEvent
from shared.db import unit_of_work
from shared.topics import EVENTS_RAW
from tests.fixtures.enrich import PRIVACY_KEY
from tests.unit.builders import identify


async def test_an_identify_with_a_formula_first_name_is_enriched_with_an_apostrophe(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    enrich = EnrichHandler(
        provider=None,
        references=References(),
        policy=EnrichPolicy(max_anonymous_history=500),
        privacy_key=PRIVACY_KEY,
    )
    call = identify(
        message_id="id-1",
        user_id="usr-1",
        traits={"email": "ada@initech.com", "firstName": '=HYPERLINK("http://x","y")'},
    )
    message: Message[BaseModel] = Message(
        topic=EVENTS_RAW, partition=0, offset=0, key=None, value=call
    )
    async with unit_of_work(sessions) as session:
        outputs = await enrich([message], session)

    enriched = [output.value for output in outputs if isinstance(output.value, EnrichedEvent)]
    assert [event.profile.first_name for event in enriched] == ['\'=HYPERLINK("http://x","y")']
