"""The seam every input publishes through.

MQTT, HTTP and the local adapters (BLE scanner, serial POS, cameras) all hand raw event
dictionaries to an :class:`EventBus` together with the :class:`Source` they came from. The bus
validates them into typed events, runs the pipeline stages (identity, suppression, consent),
journals them with group commit and only then reports back — so "published" always means
"durable".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CHANNEL_BY_KIND", "DEVICE_KINDS", "EventBus", "PublishResult", "Rejection", "Source"]

#: Device kinds the gateway knows, and the channel their events are attributed to.
CHANNEL_BY_KIND: Mapping[str, str] = {
    "kiosk": "kiosk",
    "display": "display",
    "tablet": "tablet",
    "pos": "pos",
    "ops": "ops",
    "beacon": "ble",
    "camera": "camera",
    "gateway": "gateway",
}
DEVICE_KINDS = frozenset(CHANNEL_BY_KIND)


@dataclass(frozen=True)
class Source:
    """Who an event came from: always taken from the authenticated connection, never the body."""

    store_id: str
    device_id: str
    kind: str
    transport: str = "local"  # mqtt | http | serial | ble | camera | local

    @property
    def channel(self) -> str:
        return CHANNEL_BY_KIND.get(self.kind, self.kind)


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str
    detail: str


@dataclass(frozen=True)
class PublishResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: tuple[Rejection, ...] = field(default_factory=tuple)
    message_ids: tuple[str, ...] = field(default_factory=tuple)


class EventBus(Protocol):
    """What adapters publish into. Implemented by :class:`edge.ingest.Ingestor`."""

    async def publish(self, source: Source, events: Sequence[Mapping[str, Any]]) -> PublishResult:
        """Validate, enrich and durably journal ``events``; returns after the commit."""
        ...
