"""The trigger runtime: signal → contact policy → arm → content → touch point → exposure row →
conversion. Transport-free: it takes committed events and a clock, and talks to the rest of
the gateway only through :mod:`edge.triggers.ports` (so the simulator, the benchmark and the
gateway drive the same code).

Arms: a unit falls in the holdout by a deterministic hash of (unit, trigger@version) into
10,000 buckets — the holdout share is fixed — and the other units' firings are shared among the
variants by Thompson sampling on conversion. A promoted variant takes all non-holdout traffic
and the holdout shrinks to the trigger's ``min_holdout``.

Every firing gets a ``decisionId`` (the engine's, when it chose the content, so a redemption at
the POS is attributed to it) and a row in ``trigger_firings``; a holdout firing is logged and
delivers nothing. Conversion = an ``Offer Redeemed`` of the firing's decision, or the trigger's
goal event by the same unit within the window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.bus import Source
from edge.events import Event
from edge.ids import derived_uuid7
from edge.stats import thompson_choice
from edge.triggers.delivery import OfferPublisher
from edge.triggers.evaluator import Candidate, Evaluator
from edge.triggers.learn import Complements, RepurchaseCycles
from edge.triggers.library import Library, Trigger
from edge.triggers.policy import ContactLedger
from edge.triggers.ports import CatalogReader, ConsentPolicy, DecisionPort, ProfileReader
from edge.triggers.tables import Firing, FiringStore

__all__ = ["Fired", "TriggerRuntime", "bucket"]

log = logging.getLogger("edge.triggers")

_DAY_MS = 86_400_000
_BUCKETS = 10_000


def bucket(unit: str, trigger_key: str) -> int:
    digest = hashlib.sha256(f"{trigger_key}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


@dataclass
class Fired:
    """What one candidate became (also the log line)."""

    trigger: str
    version: int
    arm: str
    outcome: str
    decision_id: str
    unit: str
    touchpoint: str
    device_id: str | None
    offers: list[dict[str, Any]] = field(default_factory=list)
    topic: str | None = None
    key: str = ""  # the signal instance (trigger@version:…)


@dataclass
class _Open:
    firing_key: str
    trigger_key: tuple[str, int]
    arm: str
    unit: str
    fired_ms: int
    deadline_ms: int
    goal: dict[str, Any]


class TriggerRuntime:
    def __init__(
        self,
        library: Library,
        *,
        store: FiringStore,
        consent: ConsentPolicy,
        catalog: CatalogReader,
        publisher: OfferPublisher,
        decide: DecisionPort | None = None,
        profiles: ProfileReader | None = None,
        store_id: str = "",
        timezone_offset_minutes: int = 0,
        pre_period_days: int = 30,
        late_ms: int = 30 * 60_000,
        max_units: int = 50_000,
        max_open: int = 200_000,
        count: Callable[[str, str], None] = lambda what, reason: None,
    ) -> None:
        self.store = store
        self.consent = consent
        self.catalog = catalog
        self.publisher = publisher
        self.decide = decide
        self.profiles = profiles
        self.store_id = store_id
        self.tz = timedelta(minutes=timezone_offset_minutes)
        self.pre_period_ms = pre_period_days * _DAY_MS
        self.late_ms = late_ms
        self.max_open = max_open
        self.count = count
        self.cycles = RepurchaseCycles()
        self.complements = Complements()
        self.evaluator = Evaluator(
            library,
            consent=consent,
            catalog=catalog,
            profiles=profiles,
            cycles=self.cycles,
            complements=self.complements,
            max_units=max_units,
            timezone_offset_minutes=timezone_offset_minutes,
            on_refused=lambda reason: count("refused", reason),
        )
        self.library = library
        self.ledger = ContactLedger(library.max_per_visit)
        self.counts: dict[tuple[str, int], dict[str, list[int]]] = {}
        self.promotions = store.promotions()
        self._open: OrderedDict[str, _Open] = OrderedDict()  # firing key -> open firing
        self._by_unit: dict[str, set[str]] = {}
        self._by_decision: dict[str, str] = {}
        self._pending_rows: list[Firing] = []
        self._pending_conversions: list[tuple[str, int, str]] = []
        self._recent: OrderedDict[str, None] = OrderedDict()  # firing keys not yet written
        self._expired_at = 0
        self.fired: list[Fired] = []  # the latest firings (bounded), for the log and tests
        self._load_counts()

    # -- library ---------------------------------------------------------------------------
    @property
    def goal_events(self) -> frozenset[str]:
        goals = self.__dict__.get("_goals")
        if goals is None or goals[0] is not self.library:
            names = frozenset({"Offer Redeemed", *(t.goal.event for t in self.library.triggers)})
            goals = self.__dict__["_goals"] = (self.library, names)
        return goals[1]

    def set_library(self, library: Library) -> None:
        self.library = library
        self.ledger.max_per_visit = library.max_per_visit
        self.evaluator.load(library)
        self.promotions = self.store.promotions()
        self._load_counts()

    def _load_counts(self) -> None:
        for t in self.library.triggers:
            key = (t.id, t.version)
            if key not in self.counts:
                self.counts[key] = {arm: [n, c] for arm, (n, c) in self.store.arm_counts(t.id, t.version).items()}

    def promote(self, trigger_id: str, version: int, variant: str, min_holdout: float, at_ms: int) -> None:
        self.store.promote(trigger_id, version, variant, min_holdout, at_ms)
        self.promotions = self.store.promotions()

    # -- restart ---------------------------------------------------------------------------
    def rebuild(self, history: Iterable[Event], now_ms: int) -> list[Candidate]:
        """After a restart: learn from the journal's purchases, rebuild the contact ledger from
        today's firings and the open conversion windows, and replay recent events through the
        evaluator (pending sequences and dwell timers come back). Returns the candidates the
        replay produced that never fired and are still fresh (the caller fires them)."""
        for fk, did, unit, _visit, fired, deadline, goal in self.store.open_firings(now_ms):
            self._watch(
                _Open(
                    fk,
                    (goal.get("trigger", ""), int(goal.get("version", 0))),
                    goal.get("arm", ""),
                    unit,
                    fired,
                    deadline,
                    goal,
                ),
                did,
            )
        day_start = now_ms - (now_ms + int(self.tz.total_seconds() * 1000)) % _DAY_MS
        day = self._day(now_ms)
        for tid, unit, visit, device, _tp, fired, offers in self.store.since(day_start):
            self.ledger.record(tid, unit, visit, day, fired)
            if device:
                self.ledger.shown(visit, device, json.loads(offers))
        fresh: list[Candidate] = []

        def keep(cands: list[Candidate]) -> None:
            fresh.extend(c for c in cands if not self.store.known(c.key) and now_ms - c.at_ms <= self.late_ms)

        for event in history:  # time passes as it did: timers due before an event fire before it
            keep(self.evaluator.tick(event.received_ms))
            keep(self.evaluator.observe([event]))
            self._convert([event])
        keep(self.evaluator.tick(now_ms))
        return fresh

    # -- the live path ---------------------------------------------------------------------
    async def on_events(self, events: Sequence[Event], now_ms: int) -> list[Fired]:
        self._convert(events)
        out = []
        for cand in self.evaluator.observe(events):
            fired = await self.fire(cand, now_ms)
            if fired is not None:
                out.append(fired)
        return out

    async def on_tick(self, now_ms: int) -> list[Fired]:
        out = []
        for cand in self.evaluator.tick(now_ms):
            if now_ms - cand.at_ms > self.late_ms:
                self.count("refused", "too_late")
                continue
            fired = await self.fire(cand, now_ms)
            if fired is not None:
                out.append(fired)
        self._expire_open(now_ms)
        return out

    async def fire(self, cand: Candidate, now_ms: int) -> Fired | None:
        t = cand.trigger
        if cand.key in self._recent:  # replayed instances were checked against the table by rebuild()
            return None
        day = self._day(now_ms)
        refusal = self.ledger.refusal(t, cand.unit, cand.visit_id, day, now_ms)
        if refusal is not None:
            self.count("refused", refusal)
            return None
        if t.audience == "person" and (
            cand.user_id is None
            or self.consent.is_suppressed(cand.user_id)
            or not self.consent.allows(cand.user_id, "personalization")
        ):
            self.count("refused", "no_consent")  # consent withdrawn since the signal: nothing happens
            return None
        device = t.action.device or self.library.device_for(t.action.touchpoint, cand.zone, cand.signal_device)
        if device is None:
            self.count("refused", "no_device")
            return None
        arm = self._arm(t, cand)
        decision_id = derived_uuid7(now_ms, b"trigger", cand.key.encode())
        pre_spend = self._pre_spend(cand.user_id, now_ms) if t.audience == "person" else None
        offers: list[dict[str, Any]] = []
        outcome = "holdout"
        topic = None
        if arm != "holdout":
            decision_id, offers = await self._content(t, arm, cand, device, decision_id)
            offers = [dict(o) for o in self.ledger.without_collisions(cand.visit_id, device, offers)] if offers else []
            outcome = "delivered" if offers else "no_offer"
        self.ledger.record(t.id, cand.unit, cand.visit_id, day, now_ms)
        if offers:
            self.ledger.shown(cand.visit_id, device, offers)
            payload = self.publisher.payload(
                decision_id=decision_id,
                arm=arm,
                trigger=(t.id, t.version),
                offers=offers,
                issued_ms=now_ms,
                valid_ms=t.window_ms,
            )
            profile = None
            if t.action.touchpoint == "tablet" and cand.user_id is not None and self.profiles is not None:
                profile = self.profiles.summary(cand.user_id)
            why = t.variant(arm).message or cand.why
            topic = self.publisher.publish(t.action.touchpoint, device, payload, profile=profile, why=why)
        goal = self._goal(t, cand, offers, arm)
        firing = Firing(
            cand.key,
            decision_id,
            t.id,
            t.version,
            arm,
            cand.unit,
            cand.user_id or cand.erase_id,
            cand.visit_id,
            t.action.touchpoint,
            device,
            now_ms,
            bool(offers),
            outcome,
            offers,
            goal,
            pre_spend,
            now_ms + t.window_ms,
        )
        self._pending_rows.append(firing)
        self._remember(cand.key)
        self._watch(_Open(cand.key, (t.id, t.version), arm, cand.unit, now_ms, now_ms + t.window_ms, goal), decision_id)
        arms = self.counts.setdefault((t.id, t.version), {})
        arms.setdefault(arm, [0, 0])[0] += 1
        self.count("fired", outcome)
        fired = Fired(
            t.id, t.version, arm, outcome, decision_id, cand.unit, t.action.touchpoint, device, offers, topic, cand.key
        )
        self.fired.append(fired)
        if len(self.fired) > 1000:
            del self.fired[:500]
        log.info(
            "trigger %s@%d fired: arm %s, %s on %s/%s (%s)",
            t.id,
            t.version,
            arm,
            outcome,
            t.action.touchpoint,
            device,
            cand.why,
        )
        return fired

    def _remember(self, key: str) -> None:
        self._recent[key] = None
        while len(self._recent) > 100_000:
            self._recent.popitem(last=False)

    def _arm(self, t: Trigger, cand: Candidate) -> str:
        promo = self.promotions.get((t.id, t.version))
        holdout = promo[1] if promo else t.holdout
        if bucket(cand.unit, t.key) < holdout * _BUCKETS:
            return "holdout"
        if promo:
            return promo[0]
        if len(t.variants) == 1:
            return t.variants[0].id
        arms = self.counts.get((t.id, t.version), {})
        rng = random.Random(hashlib.sha256(cand.key.encode()).digest())
        return thompson_choice({v.id: tuple(arms.get(v.id, (0, 0))) for v in t.variants}, rng)  # type: ignore[misc]

    async def _content(
        self, t: Trigger, arm: str, cand: Candidate, device: str, decision_id: str
    ) -> tuple[str, list[dict[str, Any]]]:
        variant = t.variant(arm)
        fixed = variant.offer or t.action.offer
        if t.action.content == "fixed" or self.decide is None:
            if fixed is None:
                return decision_id, []
            return decision_id, [
                {
                    "offerId": fixed["offerId"],
                    "sku": fixed.get("sku"),
                    "title": fixed["title"],
                    "score": 1.0,
                    "reasons": list(fixed.get("reasons", [f"trigger {t.id}"])),
                }
            ]
        body: dict[str, Any] = {"visitId": cand.visit_id, "limit": t.action.limit, "basket": list(cand.basket[-50:])}
        if cand.user_id is not None:  # person-level only: an anonymous trigger sends no identity
            body["userId"] = cand.user_id
        if cand.zone is not None:
            body["zone"] = cand.zone
        placement = variant.placement or t.action.placement
        if placement is not None:
            body["placement"] = placement
        try:
            response = await self.decide(Source(self.store_id, device, t.action.touchpoint, "local"), body)
        except Exception as exc:  # a refused or failed decision: the firing is measured, nothing shown
            self.count("refused", "decision_failed")
            log.warning("trigger %s: decision failed (%s)", t.id, type(exc).__name__)
            return decision_id, []
        return str(response.get("decisionId", decision_id)), list(response.get("offers", []))

    def _pre_spend(self, user_id: str | None, now_ms: int) -> float | None:
        if user_id is None or self.profiles is None:
            return None
        days = self.pre_period_ms / _DAY_MS
        return round(
            sum(self.catalog.price_of(sku) for sku, ago in self.profiles.purchases(user_id, now_ms) if ago <= days), 4
        )

    def _goal(self, t: Trigger, cand: Candidate, offers: Sequence[dict[str, Any]], arm: str) -> dict[str, Any]:
        g = t.goal
        skus: list[str] = []
        category = g.category
        if g.sku == "signal":
            if cand.sku and cand.category is None:
                skus = [cand.sku]
            elif cand.category:
                category = category or cand.category
        elif g.sku == "offer":
            skus = [str(o["sku"]) for o in offers if o.get("sku")]
        elif g.sku != "any":
            skus = [g.sku]
        return {
            "event": g.event,
            "skus": skus,
            "category": category,
            "any": g.sku == "any",
            "trigger": t.id,
            "version": t.version,
            "arm": arm,
            "audience": t.audience,
        }

    # -- conversions -----------------------------------------------------------------------
    def _watch(self, o: _Open, decision_id: str) -> None:
        self._open[o.firing_key] = o
        self._by_unit.setdefault(o.unit, set()).add(o.firing_key)
        self._by_decision[decision_id] = o.firing_key
        while len(self._open) > self.max_open:
            self._drop(next(iter(self._open)))

    def _drop(self, key: str) -> None:
        o = self._open.pop(key, None)
        if o is None:
            return
        keys = self._by_unit.get(o.unit)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_unit[o.unit]

    def _expire_open(self, now_ms: int) -> None:
        """Forget firings whose window closed (every 5 s of event time; a late check is harmless:
        a conversion is only counted inside the window)."""
        if now_ms - self._expired_at < 5000:
            return
        self._expired_at = now_ms
        for key in list(self._open):
            if self._open[key].deadline_ms > now_ms:
                continue
            self._drop(key)
        if len(self._by_decision) > 2 * max(len(self._open), 1000):
            self._by_decision = {d: k for d, k in self._by_decision.items() if k in self._open}

    def _convert(self, events: Sequence[Event]) -> None:
        goals = self.goal_events
        for event in events:
            name = event.name
            if name not in goals:  # most events convert nothing: no work for them
                continue
            if name == "Offer Redeemed":
                did = event.body.get("properties", {}).get("decisionId")
                key = self._by_decision.get(did) if isinstance(did, str) else None
                if key is not None and key in self._open:
                    self._converted(key, event.received_ms, "redeemed")
            if not self._by_unit:
                continue
            for unit in self._units_of(event):
                for key in list(self._by_unit.get(unit, ())):
                    o = self._open.get(key)
                    if o is None or not (o.fired_ms <= event.received_ms <= o.deadline_ms):
                        continue
                    if name == o.goal["event"] and _goal_met(o.goal, event, self.catalog):
                        self._converted(key, event.received_ms, "goal")

    def _units_of(self, event: Event) -> list[str]:
        units = []
        if event.user_id:
            units.append(f"p:{event.user_id}")
        if event.anonymous_id:
            units.append(f"v:{event.anonymous_id}")
        elif event.user_id:
            units.append(f"v:{self.evaluator._visit_of(event)}")
        else:
            units.append(f"d:{event.source.device_id}")
        return units

    def _converted(self, key: str, at_ms: int, how: str) -> None:
        o = self._open.get(key)
        if o is None:
            return
        self._drop(key)
        arms = self.counts.setdefault(o.trigger_key, {})
        arms.setdefault(o.arm, [0, 0])[1] += 1
        self._pending_conversions.append((key, at_ms, how))
        self.count("converted", how)

    # -- persistence -----------------------------------------------------------------------
    def take_writes(self) -> tuple[list[Firing], list[tuple[str, int, str]]]:
        rows, convs = self._pending_rows, self._pending_conversions
        self._pending_rows, self._pending_conversions = [], []
        return rows, convs

    def flush(self) -> None:
        """Write the pending rows (any thread: the store serialises on the journal lock)."""
        rows, convs = self.take_writes()
        self.store.write(rows, convs)

    def _day(self, now_ms: int) -> str:
        return (datetime.fromtimestamp(now_ms / 1000, UTC) + self.tz).date().isoformat()


def _goal_met(goal: dict[str, Any], event: Event, catalog: CatalogReader) -> bool:
    if goal.get("any"):
        return True
    props = event.body.get("properties", {})
    skus = set(goal.get("skus") or ())
    category = goal.get("category")
    lines = props.get("products") if isinstance(props.get("products"), list) else [props]
    for line in lines:
        if not isinstance(line, dict) or not isinstance(line.get("sku"), str):
            continue
        if line["sku"] in skus or (category is not None and catalog.category_of(line["sku"]) == category):
            return True
    return not skus and category is None
