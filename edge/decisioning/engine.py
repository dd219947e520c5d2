"""The decision engine: one path for HTTP ``POST /v1/decisions`` and MQTT ``…/decide``.

identity → consent (no ``personalization``: anonymous context only, no history, no profile)
→ recommender candidates (``arecommend``, off the event loop) → join with the offer catalog →
eligibility (store, segment, channel), applicability (validity, hours, placement, not in the
basket, stock, minimum basket), suitability (caps per person/channel/day and visit, no collision
with another touch point this visit) → arbitration, priority = propensity × context weight ×
value × lever → experiment arm per campaign → response, and one ``Offer Exposed`` event for both
arms. Deterministic for the same request, offers, model and clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from edge.bus import EventBus, Source
from edge.decisioning.caps import CapLedger, Exposure
from edge.decisioning.consent import ConsentLedger
from edge.decisioning.experiments import arm as assign_arm
from edge.decisioning.identity import Identity
from edge.decisioning.offers import Offer, OfferCatalog
from edge.decisioning.profile import ProfileStore
from edge.errors import InvalidEvent
from edge.ids import derived_uuid7
from models.context import Context

__all__ = ["Candidate", "DecisionEngine", "Recommending", "local_time"]

_MAX_BASKET = 200


class Recommending(Protocol):
    """What the engine needs of ``models.runtime.Recommender``."""

    @property
    def catalog(self) -> Any: ...

    async def arecommend(
        self,
        basket: Sequence[str],
        history: Sequence[tuple[str, float]] = (),
        context: Context = ...,
        k: int | None = None,
    ) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Candidate:
    offer: Offer
    sku: str
    propensity: float
    priority: float
    reasons: tuple[str, ...]


def local_time(now_ms: int, offset_minutes: int) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, UTC) + timedelta(minutes=offset_minutes)


class DecisionEngine:
    def __init__(
        self,
        *,
        identity: Identity,
        consent: ConsentLedger,
        profiles: ProfileStore,
        caps: CapLedger,
        offers: Callable[[], OfferCatalog],
        recommender: Callable[[], Recommending],
        bus: EventBus,
        publish_later: Callable[[Source, list[dict[str, Any]]], bool] | None = None,
        clock: Callable[[], float],
        is_suppressed: Callable[[str], bool],
        settings: Any,
        minimum_stock: int = 1,
    ) -> None:
        self.identity = identity
        self.consent = consent
        self.profiles = profiles
        self.caps = caps
        self.offers = offers
        self.recommender = recommender
        self.bus = bus
        self.publish_later = publish_later
        self.clock = clock
        self.is_suppressed = is_suppressed
        self.settings = settings
        self.minimum_stock = minimum_stock
        self.stock: dict[str, int] = {}

    async def decide(self, source: Source, body: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one decision request; raises InvalidEvent for a malformed request."""
        if not isinstance(body, Mapping):
            raise InvalidEvent("wrong_type", "a decision request must be a JSON object")
        now_ms = int(self.clock() * 1000)
        s = self.settings
        user_id = self.identity.user_id(body) if ("userId" in body or "identifiers" in body) else None
        if user_id is not None and self.is_suppressed(user_id):
            user_id = None  # an erased person is served as an anonymous one, and nothing is kept
        personalized = user_id is not None and self.consent.allows(user_id, "personalization")
        basket = _basket(body.get("basket", []))
        zone = _optional_str(body, "zone")
        placement = _optional_str(body, "placement")
        weather = _optional_str(body, "weather") or "unknown"
        anonymous_id = _optional_str(body, "anonymousId")
        local = local_time(now_ms, s.timezone_offset_minutes)
        day = local.date().isoformat()
        visit_key = _optional_str(body, "visitId") or anonymous_id
        if visit_key is None and user_id is not None:
            visit_key = f"{user_id}:{day}"
        person_key = user_id if personalized else visit_key
        recommender = self.recommender()
        history = self._history(recommender, user_id, now_ms) if personalized and user_id else []
        context = Context(hour=local.hour, weekday=local.weekday(), weather=weather, zone=zone, channel=source.channel)
        scored = await recommender.arecommend(basket, history, context=context, k=s.candidates)
        catalog = self.offers()
        stock = dict(self.stock)
        stock.update(_stock(body.get("stock")))
        limit = min(s.max_offers, _positive_int(body.get("limit"), s.max_offers))
        chosen = self._candidates(
            catalog,
            recommender.catalog,
            scored,
            source,
            user_id,
            basket,
            stock,
            zone,
            placement,
            local,
            person_key,
            visit_key,
            day,
            limit,
        )
        # the raw identifiers stay out even of the hash: a decisionId leaves the store
        hashed = {k: v for k, v in body.items() if k != "identifiers"} | {"userId": user_id}
        decision_id = derived_uuid7(
            now_ms,
            source.store_id.encode(),
            source.device_id.encode(),
            json.dumps(hashed, sort_keys=True, default=str).encode(),
        )
        arms = []
        for c in chosen:
            exp = c.offer.experiment
            unit = user_id if (exp.unit == "person" and user_id) else (visit_key or decision_id)
            arms.append((assign_arm(unit, exp.id, exp.holdout), unit))
        self.caps.record(
            Exposure(c.offer.id, person_key, visit_key, source.device_id, source.channel, day) for c in chosen
        )
        shown = [
            {
                "offerId": c.offer.id,
                "sku": c.sku,
                "title": c.offer.title,
                "score": round(c.priority, 6),
                "reasons": list(c.reasons),
            }
            for c, (arm, _) in zip(chosen, arms, strict=True)
            if arm == "treatment"
        ]
        arm_names = {a for a, _ in arms}
        overall = "none" if not arms else arm_names.pop() if len(arm_names) == 1 else "mixed"
        if chosen:
            await self._expose(
                source,
                decision_id,
                user_id,
                anonymous_id,
                visit_key,
                person_key,
                placement,
                personalized,
                chosen,
                arms,
                now_ms,
                day,
            )
        return {"decisionId": decision_id, "arm": overall, "personalized": personalized, "offers": shown}

    def _history(self, recommender: Any, user_id: str, now_ms: int) -> Sequence[tuple[str, float]]:
        kernel = getattr(recommender, "history_weights", None)
        if kernel is not None:
            # the heaviest history_items of them (not the first bought), as the model's own
            # type, which its recommend takes without checking each pair again
            weighted: Sequence[tuple[str, float]] = kernel(
                self.profiles.purchases(user_id, now_ms), self.settings.history_items
            )
            return weighted
        return self.profiles.history(user_id, now_ms, self.settings.history_items)

    def _candidates(
        self,
        catalog: OfferCatalog,
        products: Any,
        scored: Sequence[Any],
        source: Source,
        user_id: str | None,
        basket: list[str],
        stock: Mapping[str, int],
        zone: str | None,
        placement: str | None,
        local: datetime,
        person_key: str | None,
        visit_key: str | None,
        day: str,
        limit: int,
    ) -> list[Candidate]:
        """Rank every offer reachable from the candidates by its best (offer, SKU) pair, then
        apply the policies in priority order until ``limit`` offers pass.

        The policies depend on the offer, not on which SKU led to it, so the only pair of an
        offer that can matter is its best one: highest priority, earliest candidate on a tie —
        exactly the pair a sort of all pairs would reach first. Within one offer the priority
        grows with the candidate's propensity, so walking the candidates by propensity (ties in
        candidate order), a category's offers get their best pair from the first candidate of
        that category and need no look at the others; the policies then run on few offers."""
        if not scored:
            return []
        top = max(float(x.score) for x in scored)
        in_basket = set(basket)
        minimum = self.minimum_stock
        by_sku, by_category, levers = catalog.by_sku, catalog.by_category, catalog.levers
        zone_weight = self.settings.zone_weight
        walk = sorted(
            ((-math.exp(min(0.0, float(item.score) - top)), order, item.sku) for order, item in enumerate(scored)),
        )
        claimed: set[str] = set()
        best: dict[str, tuple[float, str, int, Offer, str, float, str | None]] = {}
        for neg_propensity, order, sku in walk:
            if sku in in_basket or stock.get(sku, minimum) < minimum:
                continue
            category = _category(products, sku)
            offers: tuple[Offer, ...] | list[Offer] = by_sku.get(sku, ())
            if category is not None and category not in claimed:
                claimed.add(category)
                offers = (*offers, *by_category.get(category, ()))
            propensity = -neg_propensity
            for offer in offers:
                weight = zone_weight if zone is not None and zone in offer.zones else 1.0
                priority = propensity * weight * offer.value * levers.get(offer.lever, 1.0)
                held = best.get(offer.id)
                if held is None or -priority < held[0]:
                    best[offer.id] = (-priority, offer.id, order, offer, sku, propensity, category)
        ranked = sorted(best.values())  # (−priority, offer id) is unique: offers never compared
        basket_value = sum(_price(products, sku) for sku in basket)
        chosen: dict[str, Candidate] = {}
        channel = source.channel
        for neg_priority, _, _, offer, sku, propensity, category in ranked:
            if len(chosen) >= limit:
                break
            if self._refusal(offer, source, user_id, placement, local, basket, basket_value) or (
                self.caps.allowed(offer, person_key, visit_key, channel, source.device_id, day) is not None
            ):
                continue
            reasons = ["recommended" if offer.sku else f"recommended in {category}"]
            if zone is not None and zone in offer.zones:
                reasons.append(f"zone {zone}")
            reasons.append(f"lever {offer.lever}")
            chosen[offer.id] = Candidate(offer, sku, propensity, -neg_priority, tuple(reasons))
        return list(chosen.values())

    def _refusal(
        self,
        offer: Offer,
        source: Source,
        user_id: str | None,
        placement: str | None,
        local: datetime,
        basket: list[str],
        basket_value: float,
    ) -> str | None:
        """Eligibility and applicability; None when the offer may be shown here and now."""
        if offer.stores is not None and source.store_id not in offer.stores:
            return "store"
        if offer.segment == "identified" and user_id is None:
            return "segment"
        if offer.segment == "anonymous" and user_id is not None:
            return "segment"
        if source.channel not in offer.channels:
            return "channel"
        if offer.placements is not None and placement not in offer.placements:
            return "placement"
        today = local.date()
        if (offer.valid_from and today < offer.valid_from) or (offer.valid_until and today > offer.valid_until):
            return "validity"
        if local.weekday() not in offer.days or not offer.hours[0] <= local.hour < offer.hours[1]:
            return "hours"
        if len(basket) < offer.min_basket_items or basket_value < offer.min_basket_value:
            return "basket"
        return None

    async def _expose(
        self,
        source: Source,
        decision_id: str,
        user_id: str | None,
        anonymous_id: str | None,
        visit_key: str | None,
        person_key: str | None,
        placement: str | None,
        personalized: bool,
        chosen: list[Candidate],
        arms: list[tuple[str, str]],
        now_ms: int,
        day: str,
    ) -> None:
        event: dict[str, Any] = {
            "type": "track",
            "event": "Offer Exposed",
            "messageId": f"exposed-{decision_id}",
            "properties": {
                "decisionId": decision_id,
                "visitId": visit_key,
                "personKey": person_key,
                "placement": placement,
                "personalized": personalized,
                "day": day,
                "exposedMs": now_ms,
                "offers": [
                    {
                        "offerId": c.offer.id,
                        "sku": c.sku,
                        "category": c.offer.category,
                        "experiment": c.offer.experiment.id,
                        "arm": arm,
                        "unit": unit,
                        "rank": rank,
                    }
                    for rank, (c, (arm, unit)) in enumerate(zip(chosen, arms, strict=True))
                ],
            },
        }
        if user_id is not None:
            event["userId"] = user_id
        if anonymous_id is not None:
            event["anonymousId"] = anonymous_id
        local = Source(source.store_id, source.device_id, source.kind, "local")
        if self.publish_later is None or not self.publish_later(local, [event]):
            await self.bus.publish(local, [event])


def _basket(raw: Any) -> list[str]:
    if not isinstance(raw, list) or len(raw) > _MAX_BASKET:
        raise InvalidEvent("wrong_type", f"basket must be a list of at most {_MAX_BASKET} SKUs")
    out = []
    for item in raw:
        sku = item.get("sku") if isinstance(item, dict) else item
        if not isinstance(sku, str) or not sku:
            raise InvalidEvent("wrong_type", "basket items must be SKU strings or {sku: …}")
        out.append(sku)
    return out


def _stock(raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values()):
        raise InvalidEvent("wrong_type", "stock must be an object of SKU → whole number")
    return dict(raw)


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise InvalidEvent("wrong_type", f"{key} must be a string of 1–128 characters")
    return value


def _positive_int(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidEvent("wrong_type", "limit must be a whole number ≥ 1")
    return value


def _category(products: Any, sku: str) -> str | None:
    try:
        return str(products.item(sku).category)
    except KeyError:
        return None


def _price(products: Any, sku: str) -> float:
    try:
        return float(products.item(sku).price)
    except KeyError:
        return 0.0
