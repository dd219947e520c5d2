"""The types the gateway's parts share: callables' shapes and the small ports features are given.

As ``starlette/types.py`` does, this module only names things; it imports nothing of the
gateway's own but the event types. A feature declares what it needs with these ports, and
:mod:`edge.gateway` — the composition root — hands each feature the other features' services
that satisfy them; no feature looks another up.

* seams a feature offers the ingest path: :data:`PreStage`, :data:`PostStage`, :data:`Writer`,
  :data:`Listener` (the committed-event feed), :data:`DecideHandler`;
* ports a feature may be given: :class:`Publisher`, :data:`Clock`, :class:`ConsentPolicy`,
  :class:`ErasureHooks`, :class:`Erasure`, :class:`ConsentChanges`, :class:`ModelSlot`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edge.bus import Source
    from edge.events import Event

__all__ = [
    "Clock",
    "ConsentChanges",
    "ConsentPolicy",
    "DecideHandler",
    "Erasure",
    "ErasureHook",
    "ErasureHooks",
    "Listener",
    "ModelSlot",
    "PostStage",
    "PRE_STAGE_GROWTH",
    "PreStage",
    "PrivacyCounts",
    "Publisher",
    "Undo",
    "Writer",
]

#: Seconds since the epoch; injectable for deterministic tests and the simulator's clock.
Clock = Callable[[], float]
#: Takes back what a registration did (a hook, a listener): every ``add_…`` returns one.
Undo = Callable[[], None]

#: Runs on each raw event dict before validation (e.g. raw identifiers → customer token).
#: May return a changed dict, at most :data:`PRE_STAGE_GROWTH` bytes larger as compact JSON
#: (all stages together); raises edge.errors.InvalidEvent to refuse the event.
PreStage = Callable[[dict[str, Any], "Source"], dict[str, Any]]
#: What the pre-stages together may add to an event (the identity stage's customer tokens: at
#: most nine identifier values and a userId, 37 bytes each); the ingest size check relies on it.
PRE_STAGE_GROWTH = 1024
#: Runs on each validated event before the journal (suppression, consent snapshot).
#: May mutate ``event.body``; raises edge.errors.InvalidEvent to refuse the event.
PostStage = Callable[["Event"], None]
#: The committed-event feed: called in the journal writer thread with the events just
#: committed (new ones only). Keep it fast.
Listener = Callable[[Sequence["Event"]], None]
#: Runs inside the journal's commit transaction with the events it inserts, on its connection:
#: rows derived from events commit or roll back with them (edge.journal.Journal.commit).
Writer = Callable[[sqlite3.Connection, Sequence["Event"]], None]
#: Answers a decision request (MQTT ``…/decide``, a POS terminal): (source, request JSON) →
#: response JSON; a malformed request gets ``{"error", "detail"}``.
DecideHandler = Callable[["Source", dict[str, Any]], Awaitable[dict[str, Any]]]
#: Another feature's part of an erasure: ``hook(token) -> rows removed``; any thread.
ErasureHook = Callable[[str], int]


class Publisher(Protocol):
    """Publishes to the local broker as the gateway (offers, presence, status)."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None: ...


class ConsentPolicy(Protocol):
    """The one consent-and-erasure check, asked where personal data is used and where it leaves."""

    def allows(self, user_id: str | None, purpose: str) -> bool:
        """True only if the person granted ``purpose`` and is not erased (default deny)."""
        ...

    def is_suppressed(self, user_id: str | None) -> bool:
        """True for an erased token or a visit id it identified in."""
        ...


class ErasureHooks(Protocol):
    """Where a feature that keeps personal state registers its part of every erasure."""

    def add_erasure_hook(self, hook: ErasureHook) -> Undo: ...


class Erasure(ErasureHooks, Protocol):
    """Erasing a person (by token) everywhere; the downlink and the CLI ask for it."""

    def erase(self, user_id: str, request_id: str | None = None) -> int:
        """Rows removed. When it returns, the erasure and the suppression are in force."""
        ...


class ConsentChanges(Protocol):
    """Recording a consent change that did not come from a device (the CDP downlink)."""

    def apply_consent(
        self, user_id: str, preferences: Mapping[str, Any], source: str,
        notice_version: str | None = None, *, message_id: str | None = None,
        timestamp: str | None = None,
    ) -> dict[str, bool]:  # fmt: skip
        """Journal the change as a ``Consent Updated`` event; the snapshot in force after it."""
        ...


class ModelSlot(Protocol):
    """Where the recommender in force sits: swapped whole by a model update. (Decisioning reads
    the recommender itself per decision, through a callable the composition root gives it.)"""

    def swap(self, directory: Path) -> None:
        """Verify, load, smoke-test and swap in ``directory``; raises if refused."""
        ...

    def catalog_version(self) -> str:
        """sha256 of the catalog.csv the model in force was built for."""
        ...

    def version(self) -> str | None:
        """The model in force's manifest ``version``."""
        ...

    def directory(self) -> Path:
        """The directory the model in force was loaded from (its catalog.csv, model.onnx …)."""
        ...


@dataclass(frozen=True)
class PrivacyCounts:
    """What the ops dashboard shows of consent and erasure (decisioning counts its own tables)."""

    consent: dict[str, dict[str, int]]  # per purpose: {"granted": n, "withdrawn": n}
    erasures: int  # erasure requests carried out
