"""What the outbox hands a sink, and what a sink answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

__all__ = ["OutboundEvent", "Rejected", "SendResult", "Sink"]


@dataclass(frozen=True, slots=True)
class OutboundEvent:
    seq: int
    message_id: str
    body: str  # the envelope as journaled (compact JSON), sent as is


@dataclass(frozen=True, slots=True)
class Rejected:
    event: OutboundEvent
    reason: str  # short label, e.g. "http_400", "too_large"
    detail: str


@dataclass(frozen=True)
class SendResult:
    sent: int = 0
    duplicates: int = 0  # the sink told us it already had these (JetStream de-duplication)
    rejected: tuple[Rejected, ...] = field(default_factory=tuple)


class Sink(Protocol):
    """A connection to one destination; an async context manager (house rule 4).

    ``send`` either returns (every event confirmed or permanently rejected) or raises
    :class:`~sync.errors.TransientSinkError` / :class:`~sync.errors.SinkAuthError`.
    """

    name: str

    async def __aenter__(self) -> Sink: ...
    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def send(self, events: Sequence[OutboundEvent]) -> SendResult: ...
