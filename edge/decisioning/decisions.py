"""Answering decisions: the offer catalog in force, the caps, the engine, and their metrics.

:class:`Decisions` is what the HTTP route, the MQTT ``…/decide`` handler and a POS terminal
call. It counts every answer (``edge_decisions_total`` by channel and arm), times it
(``edge_decision_seconds``) and counts the gateway's own failures apart from malformed requests
(``edge_decision_failures_total``: what a rollout judges a new model or catalog by).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from edge.bus import EventBus, Source
from edge.decisioning.caps import CapLedger
from edge.decisioning.config import DecisioningConfig
from edge.decisioning.consent import ConsentLedger
from edge.decisioning.engine import DecisionEngine, Recommending, local_time
from edge.decisioning.identity import Identity
from edge.decisioning.offers import OfferCatalog, OfferWatcher, load_offers
from edge.decisioning.profile import ProfileStore
from edge.errors import InvalidEvent
from edge.journal import Journal
from edge.types import Clock

__all__ = ["DEMO_OFFERS", "Decisions", "categories"]

DEMO_OFFERS = Path(__file__).with_name("demo_offers.toml")
PublishLater = Callable[[Source, list[dict[str, Any]]], bool]


def categories(recommender: Callable[[], Recommending]) -> Callable[[str], str | None]:
    """SKU → its category in the catalog of the model in force (None: unknown SKU, no model)."""

    def category_of(sku: str) -> str | None:
        try:
            return str(recommender().catalog.item(sku).category)
        except Exception:  # unknown SKU, or no model loaded yet
            return None

    return category_of


class Decisions:
    def __init__(
        self, *, settings: DecisioningConfig, offers_path: Path | None, minimum_stock: int,
        journal: Journal, registry: CollectorRegistry, bus: EventBus, clock: Clock,
        identity: Identity, consent: ConsentLedger, profiles: ProfileStore,
        recommender: Callable[[], Recommending], is_suppressed: Callable[[str | None], bool],
        publish_later: PublishLater | None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.recommender = recommender
        self._metrics(registry)
        self.caps = CapLedger()
        self.caps.load(journal, local_time(int(clock() * 1000), settings.timezone_offset_minutes).date().isoformat())
        self.offers_path = offers_path or DEMO_OFFERS
        self.watcher = OfferWatcher(
            self.offers_path, lambda p: load_offers(p, default_holdout=settings.default_holdout),
            on_refused=lambda exc: self.offer_files_refused.inc(),
        )  # fmt: skip
        self.engine = DecisionEngine(
            identity=identity, consent=consent, profiles=profiles, caps=self.caps,
            offers=lambda: self.watcher.current, recommender=recommender, bus=bus,
            publish_later=None if settings.exposure_ack else publish_later,
            clock=clock, is_suppressed=is_suppressed, settings=settings, minimum_stock=minimum_stock,
        )  # fmt: skip

    def _metrics(self, reg: CollectorRegistry) -> None:
        self.decisions = Counter("edge_decisions", "Decisions answered", ["channel", "arm"], registry=reg)
        self.decision_failures = Counter(
            "edge_decision_failures", "Decisions the gateway failed to answer (its fault, not a malformed"
            " request): the error rate a rollout judges a new model or catalog by", registry=reg,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "edge_decision_seconds", "Time to answer a decision",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0), registry=reg,
        )  # fmt: skip
        self.offer_files_refused = Counter(
            "edge_offer_files_refused",
            "Offer files refused on reload (the old catalog stayed)",
            registry=reg,
        )

    async def decide(self, source: Source, body: dict[str, Any]) -> dict[str, Any]:
        """The decision; raises InvalidEvent for a malformed request."""
        try:
            with self.decision_seconds.time():
                response = await self.engine.decide(source, body)
        except InvalidEvent:
            raise
        except Exception:
            self.decision_failures.inc()
            raise
        self.decisions.labels(source.channel, response["arm"]).inc()
        return response

    async def decide_or_refuse(self, source: Source, body: dict[str, Any]) -> dict[str, Any]:
        """The MQTT and POS handler: a malformed request gets ``{"error", "detail"}`` as its reply."""
        try:
            return await self.decide(source, body)
        except InvalidEvent as exc:
            return {"error": exc.reason, "detail": exc.detail}

    def set_stock(self, levels: Mapping[str, int]) -> None:
        """Known stock levels (e.g. from the POS); an offer's SKU below ``offers.minimum_stock``
        is not applicable. SKUs never reported count as in stock."""
        self.engine.stock.update(levels)

    @property
    def offers(self) -> OfferCatalog:
        return self.watcher.current

    def model_ready(self) -> bool:
        try:
            return self.recommender() is not None
        except Exception:
            return False
