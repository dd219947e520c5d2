"""The small interfaces the triggers feature needs from the rest of the gateway.

They are Protocols so the composition root can hand in whatever implements them (today the
decisioning component and the MQTT link, through :mod:`edge.triggers.component`; after the
wiring refactor, the typed ports). Tests hand in real parts or recorded ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from edge.bus import Source
from edge.events import Event

__all__ = ["CatalogReader", "Clock", "ConsentPolicy", "DecisionPort", "EventFeed", "ProfileReader", "TopicPublisher"]

#: Seconds since the epoch (injectable: the simulator runs an accelerated clock).
Clock = Callable[[], float]


class EventFeed(Protocol):
    """The committed-event feed: ``subscribe(listener)`` calls ``listener(events)`` with each
    batch just committed to the journal (new ones only), in commit order."""

    def subscribe(self, listener: Callable[[Sequence[Event]], None]) -> None: ...


class ConsentPolicy(Protocol):
    def allows(self, user_id: str | None, purpose: str) -> bool: ...
    def is_suppressed(self, user_id: str | None) -> bool: ...


class DecisionPort(Protocol):
    """The decision engine (``POST /v1/decisions`` semantics): eligibility, applicability,
    suitability (caps, collisions within the visit), arbitration; answers
    ``{"decisionId", "arm", "personalized", "offers": [...]}``."""

    def __call__(self, source: Source, body: dict[str, Any]) -> Awaitable[dict[str, Any]]: ...


class TopicPublisher(Protocol):
    """Publishes to the local broker as the gateway."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None: ...


class ProfileReader(Protocol):
    """A consented person's history (the decisioning profile store). Only person-level
    triggers ever call it, and only after the personalization check."""

    def purchases(self, user_id: str, now_ms: int) -> list[tuple[str, float]]:
        """``(sku, days_ago)`` of the person's purchases, oldest first."""
        ...

    def summary(self, user_id: str) -> dict[str, Any] | None:
        """The consented profile summary an associate may see, or None."""
        ...


class CatalogReader(Protocol):
    def category_of(self, sku: str) -> str | None: ...
    def price_of(self, sku: str) -> float: ...
