"""A store simulator whose generating process is known, so a model can be scored against truth.

Per visit, every item gets a purchase probability::

    p_gen  = sigmoid(b0 + zipf_popularity[i] + taste[u, cat(i)] + hour/weekday/weather[cat(i)])
    p_stap = staple_p[u, i] · (1 − exp(−(days_since_last_purchase / cycle[i])²))   (own staples)
    p      = 1 − (1 − p_gen)(1 − p_stap), then + offer uplift on the one offered item (treatment)

Items are drawn independently with ``p``; of a drawn substitute pair one is dropped at random;
each kept item with a complement adds it with probability ``q``. The oracle written to
``oracle.npz`` is the resulting marginal probability of every item being in the basket (exact up
to treating complement sources as independent), kept for each customer's last basket.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog, CatalogItem
from .context import WEATHERS
from .errors import DataError
from .progress import progress

__all__ = ["ORACLE_TOP", "offer_purchase_probability", "read_truth", "simulate_store"]

START = datetime(2026, 1, 5)  # a Monday, fixed so output depends on the seed alone
STORE_ID = "store-001"
ORACLE_TOP = 256
STAPLES_PER_CUSTOMER = 10
WEATHER_P = np.array([0.35, 0.25, 0.2, 0.05, 0.1, 0.05])
CATEGORY_NAMES = (
    "produce",
    "dairy",
    "bakery",
    "meat",
    "frozen",
    "snacks",
    "beverages",
    "pantry",
    "household",
    "personal-care",
    "deli",
    "breakfast",
    "baby",
    "pet",
    "alcohol",
)


def offer_purchase_probability(base_p: float, offered: bool, effect: float) -> float:
    """True purchase probability of an item given an offer: ``base_p + effect`` clipped to [0, 1].

    ``effect`` is the item's uplift in absolute probability points (``truth.json``
    ``offer_uplift``). Without an offer the probability is unchanged.
    """
    if not offered:
        return float(base_p)
    return float(min(1.0, max(0.0, base_p + effect)))


def read_truth(path: Path) -> dict[str, Any] | None:
    """A simulated store's ``truth.json`` (what :func:`simulate_store` writes), or None when
    there is none; DataError when it is not a JSON object."""
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(path, 0, f"unreadable truth: {exc}") from None
    if not isinstance(truth, dict):
        raise DataError(path, 0, "unreadable truth: not a JSON object")
    return truth


class _World:
    """Everything fixed for the whole simulation: catalog structure, customers, effects."""

    def __init__(self, rng: np.random.Generator, customers: int, skus: int) -> None:
        n_cat = max(4, skus // 60)
        self.n, self.n_cat = skus, n_cat
        self.cat = rng.integers(0, n_cat, size=skus)
        self.pop = -1.0 * np.log1p(rng.permutation(skus).astype(float))
        self.price = np.round(np.exp(rng.normal(1.0, 0.7, size=skus)), 2)
        self.margin = np.round(rng.uniform(0.1, 0.5, size=skus), 3)
        self.cycle = np.clip(np.exp(rng.normal(np.log(10.0), 0.4, size=skus)), 3.0, 40.0)
        self.uplift = np.round(rng.uniform(0.02, 0.10, size=skus), 4)
        order = rng.permutation(skus)
        order = order[np.argsort(self.cat[order], kind="stable")]
        same = self.cat[order[:-1]] == self.cat[order[1:]]
        starts = np.flatnonzero(same)[::1]
        taken = np.zeros(skus, bool)
        pairs = []
        for s in starts:
            if not taken[order[s]] and not taken[order[s + 1]] and rng.random() < 0.5:
                taken[order[s]] = taken[order[s + 1]] = True
                pairs.append((order[s], order[s + 1]))
        self.sub_a = np.array([a for a, _ in pairs], dtype=np.int64)
        self.sub_b = np.array([b for _, b in pairs], dtype=np.int64)
        partner = (np.arange(n_cat) + rng.integers(1, n_cat, size=n_cat)) % n_cat
        self.comp_src = np.flatnonzero(rng.random(skus) < 0.3)
        dst = np.empty(len(self.comp_src), dtype=np.int64)
        for k, i in enumerate(self.comp_src):
            pool = np.flatnonzero(self.cat == partner[self.cat[i]])
            weights = np.exp(self.pop[pool])
            dst[k] = pool[rng.choice(len(pool), p=weights / weights.sum())]
        self.comp_dst = dst
        self.comp_q = rng.uniform(0.3, 0.6, size=len(dst))
        self.peak = rng.uniform(0, 24, size=n_cat)
        self.amp = rng.uniform(0.0, 0.8, size=n_cat)
        self.weekend = rng.normal(0, 0.4, size=n_cat)
        self.weather = rng.normal(0, 0.4, size=(n_cat, len(WEATHERS)))
        self.visit_rate = rng.uniform(0.08, 0.35, size=customers)
        self.taste = rng.normal(0, 1.0, size=(customers, n_cat))
        self.size = rng.normal(0, 0.3, size=customers)
        self.pref_hour = np.clip(rng.normal(14, 3, size=customers), 7, 21)
        z = np.exp(self.pop).sum() * np.exp(0.5)
        self.b0 = np.log(6.0 / z)
        self.staples = np.empty((customers, STAPLES_PER_CUSTOMER), dtype=np.int64)
        for lo in range(0, customers, 256):
            hi = min(customers, lo + 256)
            keys = self.pop[None, :] + self.taste[lo:hi][:, self.cat]
            keys = keys + rng.gumbel(size=keys.shape)
            top = np.argpartition(-keys, STAPLES_PER_CUSTOMER, axis=1)[:, :STAPLES_PER_CUSTOMER]
            self.staples[lo:hi] = np.sort(top, axis=1)
        self.staple_p = rng.uniform(0.4, 0.9, size=(customers, STAPLES_PER_CUSTOMER))
        self.last_bought = np.full((customers, STAPLES_PER_CUSTOMER), -1e6)

    @classmethod
    def of_recipe(cls, seed: int, customers: int, skus: int) -> _World:
        """The world :func:`simulate_store` draws first from ``seed`` (``truth.json``'s recipe)."""
        return cls(np.random.default_rng(seed), customers, skus)

    def background(self, users: np.ndarray, hours: np.ndarray, weekday: int, weather: int) -> np.ndarray:
        """``p_gen`` of every item for each visiting user, before staples and offers: [V, n]
        float32 (taste, popularity, basket size, hour, weekend and weather)."""
        f32 = np.float32
        catfx = self.taste[users] + self.amp * np.cos(2 * np.pi * (hours[:, None] - self.peak) / 24)
        catfx = (catfx + self.weekend * (weekday >= 5) + self.weather[:, weather]).astype(f32)
        logit = catfx[:, self.cat]
        logit += (self.b0 + self.pop).astype(f32)[None, :]
        logit += self.size[users, None].astype(f32)
        np.negative(logit, out=logit)
        np.exp(logit, out=logit)
        logit += f32(1.0)
        p: np.ndarray = np.reciprocal(logit, out=logit)
        return p

    def probabilities(self, users: np.ndarray, day: int, hours: np.ndarray, weekday: int, weather: int) -> np.ndarray:
        """Pre-offer purchase probability of every item for each visiting user: [V, n]."""
        p = self.background(users, hours, weekday, weather)
        since = (day - self.last_bought[users]) / self.cycle[self.staples[users]]
        p_st = self.staple_p[users] * (1.0 - np.exp(-(since**2)))
        rows = np.arange(len(users))[:, None]
        cols = self.staples[users]
        p[rows, cols] = 1.0 - (1.0 - p[rows, cols]) * (1.0 - p_st.astype(np.float32))
        return p

    def draw(self, rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
        """Draw baskets [V, n]: independent draws, substitutes thinned, complements added."""
        base = rng.random(p.shape, dtype=np.float32) < p
        a, b = self.sub_a, self.sub_b
        both = base[:, a] & base[:, b]
        coin = rng.random(both.shape, dtype=np.float32) < 0.5
        base[:, a] &= ~(both & coin)
        base[:, b] &= ~(both & ~coin)
        draws = rng.random((p.shape[0], len(self.comp_src)), dtype=np.float32)
        rows, cols = np.nonzero(base[:, self.comp_src] & (draws < self.comp_q))
        base[rows, self.comp_dst[cols]] = True
        return base

    def marginals(self, p: np.ndarray) -> np.ndarray:
        """The probability of each item ending up in the basket (the oracle), [V, n]."""
        p = p.astype(np.float64)
        m = p.copy()
        a, b = self.sub_a, self.sub_b
        m[:, a] = p[:, a] * (1 - p[:, b] / 2)
        m[:, b] = p[:, b] * (1 - p[:, a] / 2)
        log_miss = np.log1p(-np.minimum(m[:, self.comp_src] * self.comp_q, 1 - 1e-12))
        order = np.argsort(self.comp_dst, kind="stable")
        dst = self.comp_dst[order]
        starts = np.flatnonzero(np.r_[True, dst[1:] != dst[:-1]])
        total = np.zeros_like(m)
        if len(order):
            total[:, dst[starts]] = np.add.reduceat(log_miss[:, order], starts, axis=1)
        p_any: np.ndarray = 1.0 - (1.0 - m) * np.exp(total)
        return p_any


def simulate_store(out: Path, *, seed: int, customers: int, days: int, skus: int, quiet: bool = True) -> dict[str, int]:
    """Simulate a store and write catalog.csv, transactions.csv, offers.csv, oracle.npz, truth.json.

    Deterministic for a given (seed, customers, days, skus). Returns a small summary.
    """
    if customers < 1 or days < 1 or skus < 20:
        raise ValueError("need customers ≥ 1, days ≥ 1 and skus ≥ 20")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    world = _World(rng, customers, skus)
    sku_names = [f"SKU{i:05d}" for i in range(skus)]
    catalog = Catalog(
        [
            CatalogItem(
                sku_names[i],
                f"{CATEGORY_NAMES[world.cat[i] % len(CATEGORY_NAMES)]} item {i}",
                f"{CATEGORY_NAMES[world.cat[i] % len(CATEGORY_NAMES)]}-{world.cat[i]}",
                float(world.price[i]),
                float(world.margin[i]),
            )
            for i in range(skus)
        ]
    )
    catalog.write(out / "catalog.csv")
    last_p = np.zeros((customers, skus), dtype=np.float32)
    last_order = np.full(customers, -1, dtype=np.int64)
    parts: list[tuple[np.ndarray, ...]] = []
    offers: list[tuple[object, ...]] = []
    stamps: list[str] = []
    order_no = visit_no = 0
    pop_p = np.exp(world.pop) / np.exp(world.pop).sum()
    for day in progress(range(days), desc="simulate", quiet=quiet):
        date = START + timedelta(days=day)
        weather = int(rng.choice(len(WEATHERS), p=WEATHER_P))
        users = np.flatnonzero(rng.random(customers) < world.visit_rate)
        if len(users) == 0:
            continue
        hours = np.clip(np.round(world.pref_hour[users] + rng.normal(0, 1.5, len(users))), 7, 21)
        minutes = rng.integers(0, 60, size=len(users))
        p = world.probabilities(users, day, hours, date.weekday(), weather)
        offered = rng.choice(skus, size=len(users), p=pop_p)
        treated = rng.random(len(users)) < 0.5
        v = np.flatnonzero(treated)
        p[v, offered[v]] = np.minimum(1.0, p[v, offered[v]] + world.uplift[offered[v]])
        baskets = world.draw(rng, p)
        day_stamps = [
            (date + timedelta(hours=int(h), minutes=int(mm))).isoformat() for h, mm in zip(hours, minutes, strict=True)
        ]
        sizes = baskets.sum(axis=1)
        for k, user in enumerate(users):
            visit_no += 1
            offers.append(
                (
                    f"v{visit_no:08d}",
                    f"c{user:05d}",
                    day_stamps[k],
                    sku_names[offered[k]],
                    "treatment" if treated[k] else "holdout",
                    int(baskets[k, offered[k]]),
                )
            )
        nonempty = np.flatnonzero(sizes > 0)
        numbers = order_no + 1 + np.arange(len(nonempty))
        order_no += len(nonempty)
        rows, cols = np.nonzero(baskets[nonempty])
        stamp_ids = len(stamps) + rows
        stamps.extend(day_stamps[k] for k in nonempty)
        quantity = 1 + rng.poisson(0.3, size=len(rows))
        parts.append((numbers[rows], users[nonempty][rows], cols, quantity, stamp_ids, np.full(len(rows), weather)))
        served = users[nonempty]
        last_p[served] = p[nonempty]
        last_order[served] = numbers
        bought = baskets[nonempty[:, None], world.staples[served]]
        r, c = np.nonzero(bought)
        world.last_bought[served[r], c] = day
    numbers, cust, item, qty, stamp_id, weather_id = (np.concatenate(x) for x in zip(*parts, strict=True))
    price_text = [repr(float(x)) for x in world.price]
    records = [
        (f"o{o:08d}", f"c{u:05d}", sku_names[i], q, price_text[i], stamps[t], STORE_ID, WEATHERS[w], "", "pos")
        for o, u, i, q, t, w in zip(
            numbers.tolist(),
            cust.tolist(),
            item.tolist(),
            qty.tolist(),
            stamp_id.tolist(),
            weather_id.tolist(),
            strict=True,
        )
    ]
    with open(out / "transactions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            (
                "order_id",
                "customer_id",
                "sku",
                "quantity",
                "price",
                "timestamp",
                "store_id",
                "weather",
                "zone",
                "channel",
            )
        )
        writer.writerows(records)
    with open(out / "offers.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("visit_id", "customer_id", "timestamp", "sku", "arm", "purchased"))
        writer.writerows(offers)
    have = np.flatnonzero(last_order >= 0)
    top = min(ORACLE_TOP, skus)
    ranked_items, ranked_p = [], []
    for lo in range(0, len(have), 256):
        oracle = world.marginals(last_p[have[lo : lo + 256]])
        part = np.argpartition(-oracle, top - 1, axis=1)[:, :top]
        vals = np.take_along_axis(oracle, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        ranked_items.append(np.take_along_axis(part, order, axis=1))
        ranked_p.append(np.take_along_axis(vals, order, axis=1))
    with open(out / "oracle.npz", "wb") as handle:
        np.savez_compressed(
            handle,
            order_ids=np.array([f"o{n:08d}" for n in last_order[have]]),
            items=np.concatenate(ranked_items).astype(np.int32),
            probabilities=np.concatenate(ranked_p).astype(np.float32),
        )
    truth = {
        "seed": seed,
        "customers": customers,
        "days": days,
        "skus": skus,
        "start": START.isoformat(),
        "store_id": STORE_ID,
        "offer_uplift_unit": "absolute purchase-probability points (0.05 = +5 points)",
        "offer_uplift_mean": round(float(world.uplift.mean()), 6),
        "offer_uplift": {sku_names[i]: float(world.uplift[i]) for i in range(skus)},
        "offer_assignment": "one offered sku per visit, popularity-weighted; 50 % treatment",
        "staples_per_customer": STAPLES_PER_CUSTOMER,
        "repurchase_cycle_days": {sku_names[i]: round(float(world.cycle[i]), 3) for i in range(skus)},
        "substitute_pairs": [[sku_names[a], sku_names[b]] for a, b in zip(world.sub_a, world.sub_b, strict=True)],
        "complements": [
            [sku_names[s], sku_names[d], round(float(q), 4)]
            for s, d, q in zip(world.comp_src, world.comp_dst, world.comp_q, strict=True)
        ],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return {"orders": order_no, "lines": len(records), "visits": visit_no}
