"""What the runner hands a service's handler, and what the handler hands back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.topics import Topic

V = TypeVar("V", bound=BaseModel, covariant=True)


@dataclass(frozen=True)
class Message(Generic[V]):
    """A consumed record whose value has been decoded and validated against its topic's model."""

    topic: Topic
    partition: int
    offset: int
    key: bytes | None
    value: V
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Output:
    """A record to produce once the batch's effects are stored. `topic` is the contract.

    `source` is the message of the batch that produced it. Its outbox row is tagged with that
    message's partition, so that, after a crash, the partition's next owner sends it before the
    outputs of the partition's later messages (per-key order survives a reassignment that splits
    the batch's partitions between consumers). A handler may leave it unset: the runner then
    traces the output to the batch's last message with the output's key, else (nothing in the
    batch has that key) to the batch's first message. Only an output traced to the message that
    caused it keeps its key's order across such a split: a handler whose outputs are keyed
    unlike its inputs names their `source`.
    """

    topic: Topic
    key: str
    value: BaseModel | None  # None: a tombstone (a compacted topic forgets the key)
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    source: Message[BaseModel] | None = None


class InvalidMessage(Exception):
    """Raised by a handler for a message that decoded but can never be handled (a domain reason).

    The runner rolls the batch back, dead-letters that message with `reason`, and handles the
    rest of the batch again without it.
    """

    def __init__(self, message: Message[BaseModel], reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason


class Handler(Protocol):
    """A service's handling of one batch, in consumption order (per partition: offset order).

    Runs inside the batch's database transaction (`session`); everything it writes commits
    atomically with the runner's record of the consumed offsets, so a batch is applied at most
    once however often it is delivered. It must not produce to Kafka itself: it returns its
    outputs, which the runner stores in the same transaction (outbox) and produces after commit.
    """

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]: ...
