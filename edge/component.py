"""The seam between the composition root and the features it wires.

The gateway (:mod:`edge.gateway`) builds a :class:`GatewayContext` — configuration, journal,
event bus, MQTT publisher, metrics, clock — and hands it to each feature's ``build(ctx)``
factory. A feature returns a :class:`Component`: the tables it needs (migrations), the HTTP
routes it serves, the ingest stages it adds, the rows it derives inside the journal's commit, the MQTT requests it answers, and its long-lived
work, which runs under the gateway's single ``TaskGroup``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge.bus import EventBus, Source
from edge.config import Config
from edge.events import Event
from edge.journal import CommitWriter

if TYPE_CHECKING:
    from fastapi import APIRouter
    from prometheus_client import CollectorRegistry

    from edge.journal import Journal

__all__ = [
    "Clock",
    "Component",
    "ComponentBase",
    "DecideHandler",
    "GatewayContext",
    "Listener",
    "PostStage",
    "PreStage",
    "Publisher",
    "Writer",
]

#: Runs on each raw event dict before validation (e.g. raw identifiers → customer token).
#: May return a changed dict; raises edge.errors.InvalidEvent to refuse the event.
PreStage = Callable[[dict[str, Any], Source], dict[str, Any]]
#: Runs on each validated event before the journal (suppression, consent snapshot).
#: May mutate ``event.body``; raises edge.errors.InvalidEvent to refuse the event.
PostStage = Callable[[Event], None]
#: Called in the journal writer thread with the events just committed (new ones only). Keep fast.
Listener = Callable[[Sequence[Event]], None]
#: Runs inside the journal's commit transaction with the events it inserts, on its connection:
#: rows derived from events commit or roll back with them (edge.journal.Journal.commit).
Writer = CommitWriter
#: Answers an MQTT ``…/decide`` request: (source, request JSON) → response JSON.
DecideHandler = Callable[[Source, dict[str, Any]], Awaitable[dict[str, Any]]]
Clock = Callable[[], float]  # seconds since the epoch; injectable for deterministic tests


class Publisher(Protocol):
    """Publishes to the local broker as the gateway (offers, presence, status)."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None: ...


@dataclass
class GatewayContext:
    config: Config
    state_dir: Path
    journal: Journal
    bus: EventBus
    publisher: Publisher
    metrics: CollectorRegistry
    clock: Clock
    topic_root: str  # "retail/v1/{storeId}/"
    #: components built earlier, by name, so later ones can use them (e.g. "decisioning")
    components: dict[str, Component] = field(default_factory=dict)


class Component(Protocol):
    """What a feature hands the gateway. Its tables are declared separately, as a module-level
    ``MIGRATIONS`` listed in :mod:`edge.schema`, because the journal is migrated before any
    component is built."""

    name: str

    def routers(self) -> Sequence[APIRouter]: ...
    def pre_stages(self) -> Sequence[PreStage]: ...
    def post_stages(self) -> Sequence[PostStage]: ...
    def writers(self) -> Sequence[Writer]: ...
    def listeners(self) -> Sequence[Listener]: ...
    def decide_handler(self) -> DecideHandler | None: ...
    def readiness(self) -> Mapping[str, Callable[[], bool]]: ...
    async def run(self) -> None:
        """Long-lived work; cancelled at shutdown. Return at once if there is none."""
        ...


class ComponentBase:
    """Defaults for a component that uses only some seams: override what it needs."""

    name = "component"

    def routers(self) -> Sequence[APIRouter]:
        return ()

    def pre_stages(self) -> Sequence[PreStage]:
        return ()

    def post_stages(self) -> Sequence[PostStage]:
        return ()

    def writers(self) -> Sequence[Writer]:
        return ()

    def listeners(self) -> Sequence[Listener]:
        return ()

    def decide_handler(self) -> DecideHandler | None:
        return None

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {}

    async def run(self) -> None:
        return None
