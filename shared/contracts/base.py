"""Base classes for every message value on a leadflow topic."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _require_timezone(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (ISO-8601 with offset or Z)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_require_timezone)]
"""A timestamp with a time zone: naive times are refused, never guessed."""


class Contract(BaseModel):
    """A value leadflow produces: frozen, unknown fields refused (a typo is an error, not data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Part(BaseModel):
    """A nested part of a contract, with the same strictness."""

    model_config = ConfigDict(frozen=True, extra="forbid")
