"""`enrich.commands`: enrich's internal work queue (only enrich produces and consumes it).

Work that must change leads and emit on `events.enriched` goes through the consumer runner like
every event, so it gets the same exactly-once effects and outbox:
- `firmographics_found`: the re-enrichment sweeper got an answer for a domain that had failed
  (firmographics, or None when the provider does not know the domain).
- `unmerge`: an operator asked to reverse a merge (`python -m services.enrich unmerge <merge_id>`).
- `erase`: a person asked to be erased; the request (stored by enrich with the identifier, which
  never travels on a topic) is resolved and carried out (`shared.contracts.privacy`).
Key: the domain, the merge id or the erasure request id. Applying a command twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.contracts.base import AwareDatetime, Contract
from shared.contracts.events_enriched import Firmographics


class EnrichCommand(Contract):
    schema_version: Literal[1] = 1
    command_id: str = Field(min_length=1)
    kind: Literal["firmographics_found", "unmerge", "erase"]
    domain: str | None = None
    firmographics: Firmographics | None = None
    merge_id: str | None = None
    request_id: str | None = None
    requested_by: str | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _has_its_subject(self) -> EnrichCommand:
        if self.kind == "firmographics_found" and not self.domain:
            raise ValueError("firmographics_found needs a domain")
        if self.kind == "unmerge" and not self.merge_id:
            raise ValueError("unmerge needs a merge_id")
        if self.kind == "erase" and not self.request_id:
            raise ValueError("erase needs a request_id")
        return self

    @property
    def partition_key(self) -> str:
        """The topic's key: commands about one domain (one merge, one request) stay in order."""
        return self.domain or self.merge_id or self.request_id or self.command_id
