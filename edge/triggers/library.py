"""The trigger library: a TOML file of triggers (format: ``edge/triggers/TRIGGERS.md``).

:func:`load_library` parses and validates a whole file — every error names the trigger and the
key — and :class:`LibraryWatcher` reloads it when it changes; a file that does not validate is
refused and the library in force stays.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.events import EVENT_NAMES

__all__ = [
    "Action", "Condition", "Contact", "Goal", "Library", "LibraryError", "LibraryWatcher",
    "Signal", "Trigger", "Variant", "load_library", "parse_library",
]  # fmt: skip

SIGNAL_KINDS = ("event", "sequence", "dwell", "resupply", "complement")
TOUCHPOINTS = ("display", "tablet", "pos", "kiosk")
AUDIENCES = ("person", "anonymous")
OPS = ("eq", "ne", "in", "gt", "gte", "lt", "lte", "exists")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class LibraryError(EdgeError):
    """A trigger library that does not validate; ``errors`` lists (key, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m in errors))
        self.errors = errors


@dataclass(frozen=True)
class Condition:
    """``path op value``; path is ``properties.x``, ``context.x``, ``channel`` or ``deviceId``."""

    path: str
    op: str
    value: Any
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.path.split(".")))

    def holds(self, body: Mapping[str, Any]) -> bool:
        found, actual = _lookup(body, self.parts)
        if self.op == "exists":
            return found is bool(self.value)
        if not found:
            return self.op == "ne"
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        if self.op == "in":
            return bool(actual in self.value)
        if not isinstance(actual, (int, float)) or isinstance(actual, bool):
            return False
        return bool(
            {
                "gt": actual > self.value,
                "gte": actual >= self.value,
                "lt": actual < self.value,
                "lte": actual <= self.value,
            }[self.op]
        )


def _lookup(body: Mapping[str, Any], path: str | tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = body
    for part in path.split(".") if isinstance(path, str) else path:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


@dataclass(frozen=True)
class Signal:
    kind: str
    event: str | None = None
    where: tuple[Condition, ...] = ()
    then_not: str | None = None  # sequence: the event that must NOT follow
    same: str | None = None  # sequence: the property both events share (e.g. "sku")
    within_ms: int = 0  # sequence window / dwell time
    zone: str | None = None  # dwell: the zone (None: any zone)
    cancel_event: str | None = None  # dwell: an event in the zone that cancels (associate nearby)
    cancel_where: tuple[Condition, ...] = ()
    on: tuple[str, ...] = ("Zone Entered", "Customer Identified")  # resupply: when to check
    categories: tuple[str, ...] = ()  # resupply / complement: only these (empty: any)

    def matches(self, body: Mapping[str, Any]) -> bool:
        return all(c.holds(body) for c in self.where)


@dataclass(frozen=True)
class Action:
    touchpoint: str
    content: str  # "engine" | "fixed"
    device: str | None = None
    offer: Mapping[str, Any] | None = None
    placement: str | None = None
    limit: int = 1


@dataclass(frozen=True)
class Variant:
    id: str
    offer: Mapping[str, Any] | None = None
    placement: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Contact:
    per_unit_day: int = 1
    per_visit: int = 1
    cooldown_ms: int = 0


@dataclass(frozen=True)
class Goal:
    event: str = "Order Completed"
    sku: str = "signal"  # "signal" (the SKU of the signal), "offer", "any" or a SKU
    category: str | None = None


@dataclass(frozen=True)
class Trigger:
    id: str
    version: int
    audience: str
    signal: Signal
    action: Action
    variants: tuple[Variant, ...]
    holdout: float
    min_holdout: float
    contact: Contact
    goal: Goal
    window_ms: int
    title: str = ""
    valid_from: date | None = None
    valid_until: date | None = None
    hours: tuple[int, int] = (0, 24)
    days: frozenset[int] = frozenset(range(7))

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def active(self, when: Any) -> bool:
        """``when`` is the local datetime."""
        today = when.date()
        if (self.valid_from and today < self.valid_from) or (self.valid_until and today > self.valid_until):
            return False
        return when.weekday() in self.days and self.hours[0] <= when.hour < self.hours[1]

    def variant(self, variant_id: str) -> Variant:
        for v in self.variants:
            if v.id == variant_id:
                return v
        raise KeyError(variant_id)


@dataclass(frozen=True)
class Library:
    triggers: tuple[Trigger, ...] = ()
    zones: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # zone -> touchpoint -> device
    devices: Mapping[str, str] = field(default_factory=dict)  # touchpoint -> default device
    max_per_visit: int = 3
    version: str = ""
    path: str = ""

    def device_for(self, touchpoint: str, zone: str | None, signal_device: tuple[str, str] | None) -> str | None:
        """Where the action goes: the zone's device of that kind, else the device the signal came
        from if it is of that kind (the kiosk, the till), else the library's default."""
        if zone is not None and touchpoint in self.zones.get(zone, {}):
            return self.zones[zone][touchpoint]
        if signal_device is not None and signal_device[1] == touchpoint:
            return signal_device[0]
        return self.devices.get(touchpoint)

    @property
    def horizon_ms(self) -> int:
        """How far back state matters: the longest signal window or conversion window."""
        return max([t.signal.within_ms for t in self.triggers] + [t.window_ms for t in self.triggers] + [0])


def load_library(path: Path) -> Library:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LibraryError([(str(path), f"cannot read: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise LibraryError([(str(path), f"not valid TOML: {exc}")]) from None
    return parse_library(raw, str(path))


def parse_library(raw: Mapping[str, Any], path: str = "") -> Library:
    errors: list[tuple[str, str]] = []
    p = _Parser(errors)
    unknown = set(raw) - {"version", "touchpoints", "policy", "triggers"}
    for key in sorted(unknown):
        errors.append((key, "unknown key"))
    tp = p.table(raw, "touchpoints", "touchpoints")
    zones: dict[str, dict[str, str]] = {}
    devices: dict[str, str] = {}
    for zone, mapping in p.table(tp, "zones", "touchpoints.zones").items():
        if not isinstance(mapping, Mapping):
            errors.append((f"touchpoints.zones.{zone}", "must be a table of touchpoint = device id"))
            continue
        zones[zone] = {}
        for kind, device in mapping.items():
            if kind not in TOUCHPOINTS or not isinstance(device, str) or not device:
                errors.append(
                    (
                        f"touchpoints.zones.{zone}.{kind}",
                        f"touchpoint must be one of {', '.join(TOUCHPOINTS)} with a device id",
                    )
                )
            else:
                zones[zone][kind] = device
    for kind in TOUCHPOINTS:
        if kind in tp:
            if isinstance(tp[kind], str) and tp[kind]:
                devices[kind] = tp[kind]
            else:
                errors.append((f"touchpoints.{kind}", "must be a device id"))
    policy = p.table(raw, "policy", "policy")
    max_per_visit = p.integer(policy, "max_per_visit", "policy.max_per_visit", 3, 1, 100)
    triggers: list[Trigger] = []
    seen: set[str] = set()
    items = raw.get("triggers", [])
    if not isinstance(items, list):
        errors.append(("triggers", "must be an array of tables ([[triggers]])"))
        items = []
    for i, item in enumerate(items):
        where = f"triggers[{i}]"
        if not isinstance(item, Mapping):
            errors.append((where, "must be a table"))
            continue
        tid = item.get("id")
        if isinstance(tid, str):
            where = f"triggers[{tid}]"
        trigger = p.trigger(item, where)
        if trigger is None:
            continue
        if trigger.id in seen:
            errors.append((where, f"duplicate trigger id {trigger.id!r}"))
        seen.add(trigger.id)
        triggers.append(trigger)
    version = raw.get("version", "")
    if errors:
        raise LibraryError(errors)
    return Library(tuple(triggers), zones, devices, max_per_visit, str(version), path)


class _Parser:
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors

    def err(self, key: str, message: str) -> None:
        self.errors.append((key, message))

    def table(self, raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, Mapping):
            self.err(where, "must be a table")
            return {}
        return value

    def integer(self, raw: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.err(where, f"must be a whole number {lo}–{hi}")
            return default
        return value

    def number(self, raw: Mapping[str, Any], key: str, where: str, default: float, lo: float, hi: float) -> float:
        value = raw.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi or math.isnan(value):
            self.err(where, f"must be a number {lo}–{hi}")
            return default
        return float(value)

    def event_name(self, raw: Mapping[str, Any], key: str, where: str, required: bool) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                self.err(where, "is required")
            return None
        if value not in EVENT_NAMES:
            self.err(where, f"{value!r} is not a known event name")
            return None
        return str(value)

    def conditions(self, raw: Any, where: str) -> tuple[Condition, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping):
            self.err(where, "must be a table of path = value or path = { op = value }")
            return ()
        out = []
        for path, spec in raw.items():
            key = f"{where}.{path!s}"
            if not (path in ("channel", "deviceId", "event") or path.startswith(("properties.", "context."))):
                self.err(key, "path must be properties.…, context.…, channel or deviceId")
                continue
            if not isinstance(spec, Mapping):
                out.append(Condition(path, "eq", spec))
                continue
            for op, value in spec.items():
                if op not in OPS:
                    self.err(f"{key}.{op}", f"operator must be one of {', '.join(OPS)}")
                elif op in ("gt", "gte", "lt", "lte") and (
                    not isinstance(value, (int, float)) or isinstance(value, bool)
                ):
                    self.err(f"{key}.{op}", "needs a number")
                elif op == "in" and not isinstance(value, list):
                    self.err(f"{key}.{op}", "needs an array")
                else:
                    out.append(Condition(path, op, value))
        return tuple(out)

    def minutes(self, raw: Mapping[str, Any], key: str, where: str, default: float | None, hi: float) -> int:
        if key not in raw and default is None:
            self.err(where, "is required")
            return 0
        return int(self.number(raw, key, where, default or 0, 0.01, hi) * 60_000)

    def offer(self, raw: Any, where: str) -> Mapping[str, Any] | None:
        if raw is None:
            return None
        if (
            not isinstance(raw, Mapping)
            or not isinstance(raw.get("offerId"), str)
            or not isinstance(raw.get("title"), str)
        ):
            self.err(where, "a fixed offer needs offerId and title (strings)")
            return None
        extra = set(raw) - {"offerId", "title", "sku", "reasons"}
        if extra:
            self.err(where, f"unknown key(s) {', '.join(sorted(extra))} (offerId, title, sku, reasons)")
        return dict(raw)

    def signal(self, raw: Mapping[str, Any], where: str) -> Signal | None:
        kind = raw.get("kind")
        if kind not in SIGNAL_KINDS:
            self.err(f"{where}.kind", f"must be one of {', '.join(SIGNAL_KINDS)}")
            return None
        cats = raw.get("categories", [])
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            self.err(f"{where}.categories", "must be an array of category names")
            cats = []
        where_c = self.conditions(raw.get("where"), f"{where}.where")
        if kind == "event":
            return Signal(kind, self.event_name(raw, "event", f"{where}.event", True), where_c)
        if kind == "sequence":
            same = raw.get("same")
            if same is not None and not isinstance(same, str):
                self.err(f"{where}.same", "must be a property name")
                same = None
            return Signal(
                kind,
                self.event_name(raw, "event", f"{where}.event", True),
                where_c,
                then_not=self.event_name(raw, "then_not", f"{where}.then_not", True),
                same=same,
                within_ms=self.minutes(raw, "within_minutes", f"{where}.within_minutes", None, 24 * 60),
            )
        if kind == "dwell":
            zone = raw.get("zone")
            if zone is not None and not isinstance(zone, str):
                self.err(f"{where}.zone", "must be a zone id")
                zone = None
            return Signal(
                kind,
                "Zone Entered",
                where_c,
                zone=zone,
                within_ms=self.minutes(raw, "minutes", f"{where}.minutes", None, 24 * 60),
                cancel_event=self.event_name(raw, "cancel_event", f"{where}.cancel_event", False),
                cancel_where=self.conditions(raw.get("cancel_where"), f"{where}.cancel_where"),
            )
        if kind == "resupply":
            on = raw.get("on", ["Zone Entered", "Customer Identified"])
            if not isinstance(on, list) or not on or not all(isinstance(e, str) and e in EVENT_NAMES for e in on):
                self.err(f"{where}.on", "must be an array of known event names")
                on = ["Zone Entered"]
            return Signal(kind, None, where_c, on=tuple(on), categories=tuple(cats))
        return Signal(
            kind,
            "Product Added",
            where_c,
            categories=tuple(cats),
            within_ms=self.minutes(raw, "within_minutes", f"{where}.within_minutes", 0.5, 60),
        )

    def trigger(self, raw: Mapping[str, Any], where: str) -> Trigger | None:
        before = len(self.errors)
        allowed = {
            "id",
            "version",
            "title",
            "audience",
            "signal",
            "action",
            "variants",
            "holdout",
            "min_holdout",
            "contact",
            "goal",
            "window_minutes",
            "valid_from",
            "valid_until",
            "hours",
            "days",
        }
        for key in sorted(set(raw) - allowed):
            self.err(f"{where}.{key}", "unknown key")
        tid = raw.get("id")
        if not isinstance(tid, str) or not tid or not set(tid) <= _ID_OK or len(tid) > 64:
            self.err(f"{where}.id", "must be 1–64 characters a–z, 0–9, - _ .")
            tid = "?"
        version = self.integer(raw, "version", f"{where}.version", 1, 1, 10_000)
        audience = raw.get("audience", "anonymous")
        if audience not in AUDIENCES:
            self.err(f"{where}.audience", "must be person or anonymous")
            audience = "anonymous"
        signal = self.signal(self.table(raw, "signal", f"{where}.signal"), f"{where}.signal")
        if signal is not None and signal.kind == "resupply" and audience != "person":
            self.err(f"{where}.audience", "a resupply signal reads purchase history: audience must be person")
        act = self.table(raw, "action", f"{where}.action")
        touchpoint = act.get("touchpoint")
        if touchpoint not in TOUCHPOINTS:
            self.err(f"{where}.action.touchpoint", f"must be one of {', '.join(TOUCHPOINTS)}")
            touchpoint = "display"
        content = act.get("content", "engine")
        if content not in ("engine", "fixed"):
            self.err(f"{where}.action.content", "must be engine or fixed")
        device = act.get("device")
        if device is not None and not isinstance(device, str):
            self.err(f"{where}.action.device", "must be a device id")
        offer = self.offer(act.get("offer"), f"{where}.action.offer")
        placement = act.get("placement")
        limit = self.integer(act, "limit", f"{where}.action.limit", 1, 1, 10)
        action = Action(str(touchpoint), str(content), device, offer, placement, limit)
        variants = []
        raw_variants = raw.get("variants", [{"id": "default"}])
        if not isinstance(raw_variants, list) or not raw_variants:
            self.err(f"{where}.variants", "must be a non-empty array of tables")
            raw_variants = []
        names: set[str] = set()
        for j, v in enumerate(raw_variants):
            vw = f"{where}.variants[{j}]"
            if not isinstance(v, Mapping) or not isinstance(v.get("id"), str) or not v["id"] or v["id"] == "holdout":
                self.err(vw, 'needs an id (a string, not "holdout")')
                continue
            if v["id"] in names:
                self.err(vw, f"duplicate variant id {v['id']!r}")
            names.add(v["id"])
            for key in sorted(set(v) - {"id", "offer", "placement", "message"}):
                self.err(f"{vw}.{key}", "unknown key")
            variant = Variant(v["id"], self.offer(v.get("offer"), f"{vw}.offer"), v.get("placement"), v.get("message"))
            if content == "fixed" and variant.offer is None and offer is None:
                self.err(f"{vw}.offer", "a fixed-content trigger needs an offer (on the action or the variant)")
            variants.append(variant)
        holdout = self.number(raw, "holdout", f"{where}.holdout", 0.15, 0.0, 0.5)
        min_holdout = self.number(raw, "min_holdout", f"{where}.min_holdout", min(0.05, holdout), 0.0, 0.5)
        if min_holdout > holdout:
            self.err(f"{where}.min_holdout", "must not exceed holdout")
        c = self.table(raw, "contact", f"{where}.contact")
        contact = Contact(
            self.integer(c, "per_unit_day", f"{where}.contact.per_unit_day", 1, 1, 100),
            self.integer(c, "per_visit", f"{where}.contact.per_visit", 1, 1, 100),
            int(self.number(c, "cooldown_minutes", f"{where}.contact.cooldown_minutes", 0, 0, 7 * 1440) * 60_000),
        )
        g = self.table(raw, "goal", f"{where}.goal")
        goal = Goal(
            self.event_name(g, "event", f"{where}.goal.event", False) or "Order Completed",
            str(g.get("sku", "signal")),
            g.get("category"),
        )
        window_ms = self.minutes(raw, "window_minutes", f"{where}.window_minutes", 120, 30 * 1440)
        dates = []
        for key in ("valid_from", "valid_until"):
            value = raw.get(key)
            if value is not None and not isinstance(value, date):
                self.err(f"{where}.{key}", "must be a TOML date (2026-01-31)")
                value = None
            dates.append(value)
        hours = raw.get("hours", [0, 24])
        if not (
            isinstance(hours, list)
            and len(hours) == 2
            and all(isinstance(h, int) for h in hours)
            and 0 <= hours[0] < hours[1] <= 24
        ):
            self.err(f"{where}.hours", "must be [from, until] hours, 0 ≤ from < until ≤ 24")
            hours = [0, 24]
        days = raw.get("days", list(DAYS))
        if not isinstance(days, list) or not days or not all(d in DAYS for d in days):
            self.err(f"{where}.days", f"must be an array of {', '.join(DAYS)}")
            days = list(DAYS)
        if len(self.errors) > before or signal is None:
            return None
        return Trigger(
            tid,
            version,
            str(audience),
            signal,
            action,
            tuple(variants),
            holdout,
            min_holdout,
            contact,
            goal,
            window_ms,
            str(raw.get("title", "")),
            dates[0],
            dates[1],
            (hours[0], hours[1]),
            frozenset(DAYS.index(d) for d in days),
        )


class LibraryWatcher:
    """The library in force, reloaded by :meth:`poll` when the file's mtime or size changes."""

    def __init__(
        self,
        path: Path | None,
        on_refused: Callable[[LibraryError], None] = lambda e: None,
        on_loaded: Callable[[Library], None] = lambda lib: None,
    ) -> None:
        self.path = path
        self.on_refused = on_refused
        self.on_loaded = on_loaded
        self.current = Library()
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self.current = load_library(path)  # a bad file at start is a configuration error
            self._stamp = _stamp(path)

    def poll(self) -> bool:
        """Reload if changed; True when a new library came into force."""
        if self.path is None:
            return False
        try:
            stamp = _stamp(self.path)
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            library = load_library(self.path)
        except LibraryError as exc:
            self.on_refused(exc)
            return False
        self.current = library
        self.on_loaded(library)
        return True


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size
