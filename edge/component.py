"""The seam between the composition root and the features it wires.

The gateway (:mod:`edge.gateway`) builds a :class:`GatewayContext` — configuration, journal,
event bus, MQTT publisher, metrics, clock, store id — and hands it, with the typed ports of
:mod:`edge.types` each one needs, to every feature it builds. A feature returns a
:class:`Component`: the HTTP routes it serves, the ingest stages it adds, the rows it derives
inside the journal's commit, the committed-event listeners, the MQTT requests it answers, and
its long-lived work, which runs under the gateway's single ``TaskGroup``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edge.bus import EventBus
from edge.config import Config
from edge.types import Clock, DecideHandler, Listener, PostStage, PreStage, Publisher, Writer

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


@dataclass(frozen=True)
class GatewayContext:
    """What every feature is given: the gateway's core parts (other features' services come as
    separate, typed arguments of the feature's constructor — see :mod:`edge.gateway`)."""

    config: Config
    state_dir: Path
    journal: Journal
    bus: EventBus
    publisher: Publisher
    metrics: CollectorRegistry
    clock: Clock
    store_id: str

    @property
    def topic_root(self) -> str:
        """``retail/v1/{storeId}/``: the store's MQTT topics."""
        return f"retail/v1/{self.store_id}/"


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
