"""An in-memory sink for outbox tests: records what it confirmed, fails on demand."""

from __future__ import annotations

from collections.abc import Sequence

from sync.errors import TransientSinkError
from sync.sink import OutboundEvent, SendResult


class RecordingSink:
    def __init__(self, name: str = "mem") -> None:
        self.name = name
        self.received: list[str] = []
        self.bodies: list[str] = []
        self.down = False
        self.batches = 0

    async def __aenter__(self) -> RecordingSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, events: Sequence[OutboundEvent]) -> SendResult:
        if self.down:
            raise TransientSinkError("link down", retry_after_s=None)
        self.batches += 1
        self.received.extend(e.message_id for e in events)
        self.bodies.extend(e.body for e in events)
        return SendResult(sent=len(events))
