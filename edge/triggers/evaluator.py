"""Real-time signal evaluation: committed events in, candidate firings out. Synchronous and
deterministic (time is the events' commit time and the ``now`` given to :meth:`Evaluator.tick`),
so a replay of the journal rebuilds exactly the state a crash lost.

State is per *unit* — the person (token) for person-level triggers, the visit for anonymous
ones — in an LRU bounded by ``max_units``; idle units expire after ``idle_ms`` unless they still
hold a pending timer. Absence patterns ("viewed, then not added within 10 min"; "in the zone
≥ 3 min, no associate") are pending entries with a deadline in a timer heap; the cancelling
event removes the entry, the deadline turns it into a firing.

Person-level triggers run only for a person with ``personalization`` consent (checked here and
again at delivery); anonymous triggers never see the person: their unit is the visit, and they
read no history.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.events import Event
from edge.triggers.learn import Complements, RepurchaseCycles
from edge.triggers.library import Library, Trigger, _lookup
from edge.triggers.ports import CatalogReader, ConsentPolicy, ProfileReader

__all__ = ["Candidate", "Evaluator"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Candidate:
    """A signal that matched: the dispatcher applies the contact policy, picks the arm, fires."""

    trigger: Trigger
    unit: str
    user_id: str | None  # set only for person-level triggers
    visit_id: str
    key: str  # unique per signal instance: the firing's idempotency key
    at_ms: int
    zone: str | None
    signal_device: tuple[str, str] | None  # (device id, kind) the signal came from
    sku: str | None
    basket: tuple[str, ...]
    why: str
    category: str | None = None  # the category the message is about (resupply, complement)
    erase_id: str | None = None  # the person behind an anonymous unit: kept only so erasure finds the row


@dataclass
class _Unit:
    last_ms: int = 0
    zone: str | None = None
    device: tuple[str, str] | None = None
    visit_id: str = ""
    user_id: str | None = None
    person: str | None = None
    basket: list[str] = field(default_factory=list)
    pending: dict[str, tuple[Trigger, int, dict[str, Any]]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)  # instance keys already turned into candidates


class Evaluator:
    def __init__(
        self,
        library: Library,
        *,
        consent: ConsentPolicy,
        catalog: CatalogReader,
        profiles: ProfileReader | None = None,
        cycles: RepurchaseCycles | None = None,
        complements: Complements | None = None,
        max_units: int = 50_000,
        idle_ms: int = 45 * 60_000,
        timezone_offset_minutes: int = 0,
        on_refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.consent = consent
        self.catalog = catalog
        self.profiles = profiles
        self.cycles = cycles or RepurchaseCycles()
        self.complements = complements or Complements()
        self.max_units = max_units
        self.idle_ms = idle_ms
        self.tz = timedelta(minutes=timezone_offset_minutes)
        self.on_refused = on_refused
        self.units: OrderedDict[str, _Unit] = OrderedDict()
        self.evicted = 0
        self._expired_at = 0
        self._timers: list[tuple[int, int, str, str]] = []
        self._seq = itertools.count()
        self.load(library)

    def load(self, library: Library) -> None:
        """A new library: pending entries of triggers no longer in it are dropped at their
        deadline (their trigger key is gone); others carry on."""
        self.library = library
        self.by_event: dict[str, _Dispatch] = {}
        self.cancels: dict[str, list[Trigger]] = {}
        for order, t in enumerate(library.triggers):
            s = t.signal
            starts = list(s.on) if s.kind == "resupply" else [s.event] if s.event else []
            for name in starts:
                self.by_event.setdefault(name, _Dispatch()).add(order, t)
            if s.kind == "sequence" and s.then_not:
                self.cancels.setdefault(s.then_not, []).append(t)
            if s.kind == "complement":
                self.cancels.setdefault("Order Completed", []).append(t)
            if s.kind == "dwell":
                self.cancels.setdefault("Zone Exited", []).append(t)
                if s.cancel_event:
                    self.cancels.setdefault(s.cancel_event, []).append(t)
        self._keys = {t.key for t in library.triggers}

    # -- events --------------------------------------------------------------------------
    def observe(self, events: Iterable[Event]) -> list[Candidate]:
        out: list[Candidate] = []
        for event in events:
            name = event.name
            if name == "Order Completed":
                self._learn(event)
            elif name is None:
                continue
            cancels, starts = self.cancels.get(name), self.by_event.get(name)
            if cancels is None and starts is None:
                continue
            at = event.received_ms
            for trigger in cancels or ():
                unit = self._unit_for(trigger, event, create=False)
                if unit is not None:
                    self._cancel(trigger, unit, event)
            if starts is not None:
                view = _view(event)
                matched = starts.matching(view)
                if matched:
                    local = self._local(at)
                    for trigger in matched:
                        self._start(trigger, event, at, view, local, out)
        return out

    def tick(self, now_ms: int) -> list[Candidate]:
        """Pending entries whose deadline passed become candidates; idle units expire."""
        out: list[Candidate] = []
        while self._timers and self._timers[0][0] <= now_ms:
            due, _, unit_key, pkey = heapq.heappop(self._timers)
            unit = self.units.get(unit_key)
            if unit is None or pkey not in unit.pending:
                continue
            trigger, deadline, data = unit.pending.pop(pkey)
            if deadline != due or trigger.key not in self._keys:
                continue
            if trigger.audience == "person" and not self._consented(unit.user_id):
                continue
            instance = f"{pkey}:{unit_key}:{due}"  # one firing per unit, deadline and entry
            if isinstance(data.get("zone"), str):
                unit.zone = data["zone"]  # the zone the dwell was in, not where they went since
            out.append(
                self._candidate(
                    trigger, unit_key, unit, instance, due, data.get("sku"), data["why"], category=data.get("wanted")
                )
            )
        self._expire(now_ms)
        return out

    def next_due(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    @property
    def pending(self) -> int:
        return sum(len(u.pending) for u in self.units.values())

    # -- internals -----------------------------------------------------------------------
    def _learn(self, event: Event) -> None:
        if event.name != "Order Completed":
            return
        products = event.body.get("properties", {}).get("products")
        if not isinstance(products, list):
            return
        cats = [
            c
            for p in products
            if isinstance(p, dict)
            and isinstance(p.get("sku"), str)
            and (c := self.catalog.category_of(p["sku"])) is not None
        ]
        self.complements.observe(cats)  # aggregate co-occurrence: no identity kept
        if event.user_id is not None and self._consented(event.user_id):
            self.cycles.observe(event.user_id, cats, event.occurred_ms)  # when bought, not when uploaded

    def _consented(self, user_id: str | None) -> bool:
        return user_id is not None and self.consent.allows(user_id, "personalization")

    def _unit_for(self, trigger: Trigger, event: Event, *, create: bool) -> _Unit | None:
        key = self._unit_key(trigger, event)
        if key is None:
            return None
        unit = self.units.get(key)
        if unit is None:
            if not create:
                return None
            unit = self.units[key] = _Unit()
            self._bound()
        self.units.move_to_end(key)
        unit.last_ms = max(unit.last_ms, event.received_ms)
        unit.visit_id = event.anonymous_id or unit.visit_id or self._visit_of(event)
        unit.device = (event.source.device_id, event.source.kind)
        if trigger.audience == "person":
            unit.user_id = event.user_id
        unit.person = event.user_id or unit.person
        zone = event.body.get("properties", {}).get("zoneId")
        if isinstance(zone, str):
            unit.zone = zone
        return unit

    def _unit_key(self, trigger: Trigger, event: Event) -> str | None:
        if trigger.audience == "person":
            return f"p:{event.user_id}" if event.user_id else None
        if event.anonymous_id:
            return f"v:{event.anonymous_id}"
        if event.user_id:  # an identified visit: the anonymous trigger still never reads the person
            return f"v:{self._visit_of(event)}"
        return f"d:{event.source.device_id}"  # a till's current basket, a kiosk's session

    def _visit_of(self, event: Event) -> str:
        day = (datetime.fromtimestamp(event.received_ms / 1000, UTC) + self.tz).date().isoformat()
        return f"{event.user_id or event.source.device_id}:{day}"

    def _bound(self) -> None:
        while len(self.units) > self.max_units:
            _, unit = self.units.popitem(last=False)  # the least recently active
            self.evicted += 1
            if unit.pending:
                self.on_refused("evicted_pending")

    def _expire(self, now_ms: int) -> None:
        """Idle units go, oldest first (at most once a second of event time); one still waiting
        on a timer stays until it is due (it moves to the back, so it is not looked at again
        and again)."""
        if now_ms - self._expired_at < 1000:
            return
        self._expired_at = now_ms
        for key in list(itertools.islice(self.units, 0, 1000)):
            unit = self.units[key]
            if now_ms - unit.last_ms < self.idle_ms:
                break
            if unit.pending:
                self.units.move_to_end(key)
            else:
                del self.units[key]

    def _local(self, at_ms: int) -> datetime:
        return datetime.fromtimestamp(at_ms / 1000, UTC) + self.tz

    def _start(
        self, trigger: Trigger, event: Event, at: int, view: dict[str, Any], local: datetime, out: list[Candidate]
    ) -> None:
        s = trigger.signal
        if not s.matches(view) or not trigger.active(local):
            return
        if trigger.audience == "person" and not self._consented(event.user_id):
            self.on_refused("no_consent")
            return
        unit = self._unit_for(trigger, event, create=True)
        if unit is None:
            return
        key = self._unit_key(trigger, event) or ""
        props = event.body.get("properties", {})
        sku = props.get("sku") if isinstance(props.get("sku"), str) else None
        if s.kind == "event":
            out.append(
                self._candidate(trigger, key, unit, f"{trigger.key}:{event.message_id}", at, sku, f"{event.name}")
            )
        elif s.kind == "sequence":
            same = props.get(s.same) if s.same else None
            pkey = f"{trigger.key}:{same}" if s.same else trigger.key
            if pkey not in unit.pending:
                self._pend(
                    key,
                    unit,
                    pkey,
                    trigger,
                    at + s.within_ms,
                    {
                        "sku": sku,
                        "same": same,
                        "why": f"{event.name} then no {s.then_not} within {_span(s.within_ms)}",
                    },
                )
        elif s.kind == "dwell":
            zone = props.get("zoneId")
            if s.zone is not None and zone != s.zone:
                return
            pkey = f"{trigger.key}:{zone}"
            if pkey not in unit.pending:
                self._pend(
                    key,
                    unit,
                    pkey,
                    trigger,
                    at + s.within_ms,
                    {"zone": zone, "why": f"in zone {zone} for {_span(s.within_ms)}, no associate"},
                )
        elif s.kind == "resupply":
            self._resupply(trigger, key, unit, event, at, out)
        elif s.kind == "complement":
            self._complement(trigger, key, unit, event, at, sku, out)

    def _pend(self, key: str, unit: _Unit, pkey: str, trigger: Trigger, due: int, data: dict[str, Any]) -> None:
        unit.pending[pkey] = (trigger, due, data)
        heapq.heappush(self._timers, (due, next(self._seq), key, pkey))

    def _cancel(self, trigger: Trigger, unit: _Unit, event: Event) -> None:
        s = trigger.signal
        props = event.body.get("properties", {})
        if s.kind == "complement":  # paid: too late for the pole display
            for pkey in [k for k, (t, _, _) in unit.pending.items() if t is trigger]:
                del unit.pending[pkey]
            unit.basket.clear()
        elif s.kind == "sequence":
            pkey = f"{trigger.key}:{props.get(s.same)}" if s.same else trigger.key
            unit.pending.pop(pkey, None)
        elif s.kind == "dwell":
            if event.name == "Zone Exited":
                unit.pending.pop(f"{trigger.key}:{props.get('zoneId')}", None)
            elif all(c.holds(_view(event)) for c in s.cancel_where):
                zone = props.get("zoneId")
                for pkey in [k for k in unit.pending if k.startswith(f"{trigger.key}:")]:
                    if zone is None or pkey == f"{trigger.key}:{zone}":
                        unit.pending.pop(pkey, None)

    def _resupply(self, trigger: Trigger, key: str, unit: _Unit, event: Event, at: int, out: list[Candidate]) -> None:
        if self.profiles is None or event.user_id is None:
            return
        last: dict[str, float] = {}
        for sku, days_ago in self.profiles.purchases(event.user_id, at):
            category = self.catalog.category_of(sku)
            if category is not None and (category not in last or days_ago < last[category]):
                last[category] = days_ago
        wanted = trigger.signal.categories
        for category, days in sorted(last.items()):
            if wanted and category not in wanted:
                continue
            cycle = self.cycles.cycle_days(category)
            if cycle is None or days < cycle:
                continue
            bought_day = int((at / _DAY_MS) - days)
            instance = f"{trigger.key}:{category}:{key}:{bought_day}"
            if instance in unit.done:
                continue
            unit.done.add(instance)
            out.append(
                self._candidate(
                    trigger,
                    key,
                    unit,
                    instance,
                    at,
                    None,
                    f"last bought {category} {days:.0f} days ago; cycle {cycle:.0f} days",
                    category=category,
                )
            )
            return  # one resupply message at a time

    def _complement(
        self, trigger: Trigger, key: str, unit: _Unit, event: Event, at: int, sku: str | None, out: list[Candidate]
    ) -> None:
        """A till adds items one by one: an item whose usual complement is missing starts a short
        wait (``within_minutes``); the complement added meanwhile, or the order completed,
        cancels it; at the deadline the pole display gets the message."""
        if sku is None:
            return
        if len(unit.basket) < 200:
            unit.basket.append(sku)
        cats = {c for s in unit.basket if (c := self.catalog.category_of(s)) is not None}
        for pkey in [k for k, (t, _, d) in unit.pending.items() if t is trigger and d.get("wanted") in cats]:
            del unit.pending[pkey]
        category = self.catalog.category_of(sku)
        if category is None or (trigger.signal.categories and category not in trigger.signal.categories):
            return
        wanted = self.complements.complement_of(category)
        if wanted is None or wanted in cats:
            return
        pkey = f"{trigger.key}:{unit.visit_id}:{category}"
        if pkey in unit.done or pkey in unit.pending:
            return
        unit.done.add(pkey)
        self._pend(
            key,
            unit,
            pkey,
            trigger,
            at + (trigger.signal.within_ms or 30_000),
            {"sku": sku, "wanted": wanted, "why": f"basket has {category} without its usual complement {wanted}"},
        )

    def _candidate(
        self,
        trigger: Trigger,
        key: str,
        unit: _Unit,
        instance: str,
        at: int,
        sku: str | None,
        why: str,
        category: str | None = None,
    ) -> Candidate:
        unit.done.add(instance)
        if len(unit.done) > 256:
            unit.done.pop()
        person = trigger.audience == "person"
        return Candidate(
            trigger,
            key,
            unit.user_id if person else None,
            unit.visit_id or key,
            instance,
            at,
            unit.zone,
            unit.device,
            sku,
            tuple(unit.basket),
            why,
            category,
            None if person else unit.person,
        )


class _Dispatch:
    """The triggers an event name starts, indexed by one equality condition each (a zone, a
    channel …), so an event looks only at the triggers that can match it."""

    def __init__(self) -> None:
        self.any: list[tuple[int, Trigger]] = []
        self.keyed: dict[tuple[str, ...], dict[Any, list[tuple[int, Trigger]]]] = {}

    def add(self, order: int, trigger: Trigger) -> None:
        s = trigger.signal
        conds = [(c.path, c.value) for c in s.where if c.op == "eq" and isinstance(c.value, (str, int, bool))]
        if s.kind == "dwell" and s.zone is not None:
            conds.insert(0, ("properties.zoneId", s.zone))
        conds.sort(key=lambda pv: pv[0] != "properties.zoneId")  # zones discriminate best
        if conds:
            path, value = conds[0]
            self.keyed.setdefault(tuple(path.split(".")), {}).setdefault(value, []).append((order, trigger))
        else:
            self.any.append((order, trigger))

    def matching(self, view: dict[str, Any]) -> list[Trigger]:
        found = list(self.any)
        for path, table in self.keyed.items():
            ok, value = _lookup(view, path)
            if ok and isinstance(value, (str, int, bool)):
                found.extend(table.get(value, ()))
        if len(found) > 1:
            found.sort(key=lambda ot: ot[0])
        return [t for _, t in found]


def _view(event: Event) -> dict[str, Any]:
    """What conditions see: the envelope plus the gateway-stamped channel and device."""
    body = event.body
    return {
        "properties": body.get("properties", {}),
        "context": body.get("context", {}),
        "channel": event.source.channel,
        "deviceId": event.source.device_id,
        "event": event.name,
    }


def categories_of(catalog: CatalogReader, skus: Sequence[str]) -> set[str]:
    return {c for s in skus if (c := catalog.category_of(s)) is not None}


def _span(ms: int) -> str:
    """A window as people say it: "10 min", or "3 s" under a minute (the demo's short windows)."""
    return (
        f"{ms // 60_000} min"
        if ms >= 60_000 and ms % 60_000 == 0
        else f"{ms / 1000:g} s"
        if ms < 60_000
        else f"{ms / 60_000:g} min"
    )
