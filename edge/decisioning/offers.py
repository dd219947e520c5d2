"""The offer catalog: a TOML file of tagged offers (taxonomy in edge/decisioning/OFFERS.md).

:func:`parse_offers` checks a whole file and reports *every* problem with its path
(``offers[3].hours``) in one :class:`OfferFileError`; a file with any problem is refused as a
whole, so a running gateway keeps its previous catalog (see :class:`OfferWatcher`).
"""

from __future__ import annotations

import datetime as dt
import logging
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

__all__ = [
    "CHANNELS",
    "DAYS",
    "OFFER_TYPES",
    "Caps",
    "Experiment",
    "Offer",
    "OfferCatalog",
    "OfferFileError",
    "OfferWatcher",
    "load_offers",
    "parse_offers",
]

log = logging.getLogger(__name__)

OFFER_TYPES = ("percent_off", "amount_off", "bundle", "bogo", "points", "content")
CHANNELS = ("kiosk", "display", "tablet", "pos")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEGMENTS = ("all", "identified", "anonymous")
UNITS = ("person", "visit")
DEFAULT_LEVERS = {"margin": 1.0, "traffic": 1.0, "loyalty": 1.0, "clearance": 1.0}
_OFFER_KEYS = {
    "id", "title", "type", "sku", "category", "channels", "placements", "valid_from",
    "valid_until", "days", "hours", "stores", "zones", "segment", "min_basket_items",
    "min_basket_value", "value", "discount", "lever", "caps", "experiment",
}  # fmt: skip
_CAP_KEYS = {"per_person_day", "per_channel_day", "per_visit"}
_EXPERIMENT_KEYS = {"id", "holdout", "unit"}


class OfferFileError(EdgeError):
    """An offer file was refused; ``errors`` lists every (path, message)."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = "; ".join(f"{p}: {m}" for p, m in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"offer file {source} refused: {lines}{more}")


@dataclass(frozen=True)
class Caps:
    per_person_day: int | None = None
    per_channel_day: int | None = None
    per_visit: int | None = None


@dataclass(frozen=True)
class Experiment:
    id: str
    holdout: float
    unit: str = "person"


@dataclass(frozen=True)
class Offer:
    id: str
    title: str
    type: str
    value: float
    lever: str
    experiment: Experiment
    sku: str | None = None
    category: str | None = None
    channels: frozenset[str] = frozenset(CHANNELS)
    placements: frozenset[str] | None = None  # None: any placement
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    days: frozenset[int] = frozenset(range(7))
    hours: tuple[int, int] = (0, 24)
    stores: frozenset[str] | None = None
    zones: frozenset[str] = frozenset()
    segment: str = "all"
    min_basket_items: int = 0
    min_basket_value: float = 0.0
    discount: float | None = None
    caps: Caps = field(default_factory=Caps)


@dataclass(frozen=True)
class OfferCatalog:
    offers: tuple[Offer, ...]
    levers: Mapping[str, float]
    version: str = ""

    def __post_init__(self) -> None:
        by_sku: dict[str, list[Offer]] = {}
        by_category: dict[str, list[Offer]] = {}
        for offer in self.offers:
            if offer.sku is not None:
                by_sku.setdefault(offer.sku, []).append(offer)
            if offer.category is not None:
                by_category.setdefault(offer.category, []).append(offer)
        object.__setattr__(self, "by_sku", by_sku)
        object.__setattr__(self, "by_category", by_category)
        object.__setattr__(self, "by_id", {o.id: o for o in self.offers})

    by_sku: Mapping[str, list[Offer]] = field(init=False, repr=False, compare=False)
    by_category: Mapping[str, list[Offer]] = field(init=False, repr=False, compare=False)
    by_id: Mapping[str, Offer] = field(init=False, repr=False, compare=False)


def load_offers(
    path: Path,
    *,
    default_holdout: float = 0.0,
    skus: Collection[str] | None = None,
    categories: Collection[str] | None = None,
) -> OfferCatalog:
    """Read and check ``path``; OfferFileError lists every problem."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OfferFileError(str(path), [("<file>", "does not exist")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OfferFileError(str(path), [("<file>", f"not valid TOML: {exc}")]) from None
    return parse_offers(raw, source=str(path), default_holdout=default_holdout, skus=skus, categories=categories)


def parse_offers(
    raw: Mapping[str, Any],
    *,
    source: str = "<offers>",
    default_holdout: float = 0.0,
    skus: Collection[str] | None = None,
    categories: Collection[str] | None = None,
) -> OfferCatalog:
    errors: list[tuple[str, str]] = []
    for key in set(raw) - {"version", "levers", "offers"}:
        errors.append((key, "unknown key (known: levers, offers, version)"))
    levers = dict(DEFAULT_LEVERS)
    lever_table = raw.get("levers", {})
    if not isinstance(lever_table, dict):
        errors.append(("levers", "must be a table of lever = weight"))
    else:
        for name, weight in lever_table.items():
            if not _number(weight) or weight <= 0:
                errors.append((f"levers.{name}", "must be a positive number"))
            else:
                levers[name] = float(weight)
    items = raw.get("offers", [])
    if not isinstance(items, list):
        errors.append(("offers", "must be an array of tables ([[offers]])"))
        items = []
    offers: list[Offer] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"offers[{i}]"
        if not isinstance(item, dict):
            errors.append((path, "must be a table"))
            continue
        offer = _offer(item, path, levers, default_holdout, skus, categories, errors)
        if offer is None:
            continue
        if offer.id in seen:
            errors.append((f"{path}.id", f"repeats offers[{seen[offer.id]}].id {offer.id!r}"))
        seen[offer.id] = i
        offers.append(offer)
    if errors:
        raise OfferFileError(source, errors)
    return OfferCatalog(tuple(offers), levers, str(raw.get("version", "")))


def _offer(
    item: Mapping[str, Any],
    path: str,
    levers: Mapping[str, float],
    default_holdout: float,
    skus: Collection[str] | None,
    categories: Collection[str] | None,
    errors: list[tuple[str, str]],
) -> Offer | None:
    start = len(errors)

    def err(key: str, message: str) -> None:
        errors.append((f"{path}.{key}", message))

    for key in set(item) - _OFFER_KEYS:
        err(key, f"unknown key (known: {', '.join(sorted(_OFFER_KEYS))})")
    offer_id: Any = item.get("id")
    if not isinstance(offer_id, str) or not offer_id or len(offer_id) > 64:
        err("id", "required: a string of 1–64 characters")
    title: Any = item.get("title")
    if not isinstance(title, str) or not title:
        err("title", "required: the text shown to the customer")
    kind: Any = item.get("type")
    if kind not in OFFER_TYPES:
        err("type", f"required: one of {', '.join(OFFER_TYPES)}")
    sku, category = item.get("sku"), item.get("category")
    if (sku is None) == (category is None):
        err("sku", "give exactly one of sku or category")
    if sku is not None and (not isinstance(sku, str) or (skus is not None and sku not in skus)):
        err("sku", "not a SKU of the model's catalog" if isinstance(sku, str) else "must be a string")
    if category is not None and (
        not isinstance(category, str) or (categories is not None and category not in categories)
    ):
        err("category", "not a category of the model's catalog")
    value: Any = item.get("value")
    if not _number(value) or value <= 0:
        err("value", "required: a positive number (the offer's value in arbitration)")
    lever = item.get("lever", "margin")
    if lever not in levers:
        err("lever", f"unknown lever {lever!r}; define it under [levers] ({', '.join(levers)})")
    channels = _choice_set(item, "channels", CHANNELS, err)
    placements = _string_set(item, "placements", err)
    stores = _string_set(item, "stores", err)
    zones = _string_set(item, "zones", err) or frozenset()
    day_names = _choice_set(item, "days", DAYS, err)
    days = frozenset(DAYS.index(d) for d in day_names) if day_names else frozenset(range(7))
    hours = item.get("hours", [0, 24])
    if (
        not isinstance(hours, list)
        or len(hours) != 2
        or not all(_integer(h) for h in hours)
        or not 0 <= hours[0] < hours[1] <= 24
    ):
        err("hours", "must be [start, end] whole hours with 0 ≤ start < end ≤ 24 (end exclusive)")
        hours = [0, 24]
    valid_from, valid_until = item.get("valid_from"), item.get("valid_until")
    for key, when in (("valid_from", valid_from), ("valid_until", valid_until)):
        if when is not None and (not isinstance(when, dt.date) or isinstance(when, dt.datetime)):
            err(key, "must be a TOML date (2026-03-01)")
    if isinstance(valid_from, dt.date) and isinstance(valid_until, dt.date) and valid_until < valid_from:
        err("valid_until", "is before valid_from")
    segment = item.get("segment", "all")
    if segment not in SEGMENTS:
        err("segment", f"must be one of {', '.join(SEGMENTS)}")
    min_items = item.get("min_basket_items", 0)
    if not _integer(min_items) or min_items < 0:
        err("min_basket_items", "must be a whole number ≥ 0")
    min_value = item.get("min_basket_value", 0.0)
    if not _number(min_value) or min_value < 0:
        err("min_basket_value", "must be a number ≥ 0")
    discount = item.get("discount")
    if discount is not None and (not _number(discount) or discount < 0):
        err("discount", "must be a number ≥ 0")
    caps = _caps(item.get("caps", {}), err)
    experiment = _experiment(item.get("experiment"), offer_id, default_holdout, err)
    if len(errors) > start:
        return None
    return Offer(
        id=offer_id,
        title=title,
        type=kind,
        value=float(value),
        lever=lever,
        experiment=experiment,
        sku=sku,
        category=category,
        channels=channels or frozenset(CHANNELS),
        placements=placements,
        valid_from=valid_from,
        valid_until=valid_until,
        days=days,
        hours=(hours[0], hours[1]),
        stores=stores,
        zones=zones,
        segment=segment,
        min_basket_items=min_items,
        min_basket_value=float(min_value),
        discount=None if discount is None else float(discount),
        caps=caps,
    )


def _caps(raw: Any, err: Callable[[str, str], None]) -> Caps:
    if not isinstance(raw, dict):
        err("caps", "must be a table")
        return Caps()
    values: dict[str, int] = {}
    for key, value in raw.items():
        if key not in _CAP_KEYS:
            err(f"caps.{key}", f"unknown cap (known: {', '.join(sorted(_CAP_KEYS))})")
        elif not _integer(value) or value < 1:
            err(f"caps.{key}", "must be a whole number ≥ 1 (leave it out for no cap)")
        else:
            values[key] = value
    return Caps(**values)


def _experiment(raw: Any, offer_id: Any, default_holdout: float, err: Callable[[str, str], None]) -> Experiment:
    fallback = Experiment(str(offer_id), default_holdout)
    if raw is None:
        return fallback
    if not isinstance(raw, dict):
        err("experiment", "must be a table")
        return fallback
    for key in set(raw) - _EXPERIMENT_KEYS:
        err(f"experiment.{key}", "unknown key (known: holdout, id, unit)")
    exp_id = raw.get("id", offer_id)
    if not isinstance(exp_id, str) or not exp_id:
        err("experiment.id", "must be a non-empty string (the campaign)")
    holdout = raw.get("holdout", default_holdout)
    if not _number(holdout) or not 0.0 <= holdout <= 0.5:
        err("experiment.holdout", "must be a share between 0 and 0.5 (0.1–0.2 typical)")
        holdout = 0.0
    unit = raw.get("unit", "person")
    if unit not in UNITS:
        err("experiment.unit", "must be 'person' or 'visit'")
    return Experiment(str(exp_id), float(holdout), unit)


def _choice_set(
    item: Mapping[str, Any], key: str, allowed: tuple[str, ...], err: Callable[[str, str], None]
) -> frozenset[str] | None:
    values = _string_set(item, key, err)
    if values is None:
        return None
    bad = sorted(values - set(allowed))
    if bad:
        err(key, f"unknown {', '.join(map(repr, bad))}; allowed: {', '.join(allowed)}")
        return None
    return values


def _string_set(item: Mapping[str, Any], key: str, err: Callable[[str, str], None]) -> frozenset[str] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        err(key, "must be a non-empty list of strings (leave it out for 'any')")
        return None
    return frozenset(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class OfferWatcher:
    """Holds the current catalog and reloads it when the file's mtime changes.

    A refused file is logged once per change and counted; the previous catalog stays in force.
    """

    def __init__(
        self,
        path: Path,
        loader: Callable[[Path], OfferCatalog],
        on_refused: Callable[[OfferFileError], None] = lambda exc: None,
    ) -> None:
        self.path = path
        self._loader = loader
        self._on_refused = on_refused
        self._stamp = self._mtime()
        self.current = OfferCatalog((), dict(DEFAULT_LEVERS))
        try:
            self.current = loader(path)
        except OfferFileError as exc:  # serve no offers (readiness says so) rather than not start
            log.error("%s; serving no offers until the file is fixed", exc)
            on_refused(exc)

    def _mtime(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reload if the file changed; True when a new catalog took effect."""
        stamp = self._mtime()
        if stamp == self._stamp or stamp is None:
            return False
        self._stamp = stamp
        try:
            catalog = self._loader(self.path)
        except OfferFileError as exc:
            log.error("%s; keeping the previous offer catalog", exc)
            self._on_refused(exc)
            return False
        self.current = catalog
        log.info("offer catalog reloaded: %d offers", len(catalog.offers))
        return True
