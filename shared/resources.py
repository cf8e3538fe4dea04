"""What a service's own code gets from the shell: its settings, its database and the sender of
commands to its own command topic. The start-up hook and every operator command get the same
`Resources` (`shared.service`, `shared.operator`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.commands import CommandSender
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class Resources(Generic[S]):
    """Settings, the database (None for a service without a schema, or a command that needs
    none) and the command sender (its producer starts at the first send)."""

    settings: S
    sessions: async_sessionmaker[AsyncSession] | None
    commands: CommandSender

    def database(self) -> async_sessionmaker[AsyncSession]:
        if self.sessions is None:
            raise TypeError("no database here (Service.database, OperatorCommand.needs_database)")
        return self.sessions
