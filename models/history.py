"""A person's own past purchases as model input: per item, one repurchase-likelihood weight.

Shoppers rebuy staples on a cycle: an item bought yesterday is unlikely today, one bought on
most visits and about one cycle ago is likely. The kernel is a table of empirical repurchase
rates indexed by (days since last purchase ÷ the item's typical repurchase gap, share of the
person's visits that included the item, number of purchases, baskets since the last purchase)
— recency counted in days and in baskets, which is what TIFU-KNN's decay counts; the share
either of all visits or of the visits at which the item was due (:func:`at_risk_share`) — learned from
the training baskets, so the weight the model receives is already probability-like. ``HistoryKernel.weights``
is how a caller turns raw purchase events into the ``(sku, weight)`` pairs the runtime takes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .data import Dataset

__all__ = [
    "BASES",
    "DECAYS",
    "PLAIN",
    "SHAPE",
    "History",
    "HistoryKernel",
    "ShareRule",
    "customer_histories",
    "fit_history_kernel",
]

RATIO_EDGES = (0.25, 0.5, 0.75, 1.0, 1.4, 2.0, 3.0, 5.0)
SHARE_EDGES = (0.1, 0.2, 0.3, 0.45, 0.6, 0.8)
COUNT_EDGES = (2, 4)
BASKETS_EDGES = (2, 3, 5, 9)
MIN_RATE = 1e-4
MIN_PROPENSITY = 0.05
"""Floors of the excess rates and propensities (``base`` > 0 can drive them to or below zero)."""
BASES = (0.0, 1.0)
"""Candidate shares of the item's basket frequency taken off the repurchase rates (0: raw
rates; 1: the excess over it); training keeps the better on validation."""
DECAYS = (1.0, 0.8)
"""Candidate per-basket decays of the visit share; training keeps the better on validation
(1.0: a plain share, which suits steady staples; below 1: recent baskets count more, which
is what TIFU-KNN's decay does, and suits real grocery orders)."""
"""Baskets since the item was last bought: 1 (the previous basket), 2, 3–4, 5–8, 9 or more."""
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ShareRule:
    """How a visit share is counted: each basket back weighs ``decay`` times the next, and
    with ``gaps`` (per-item repurchase gaps, days) a visit counts only as much as the item
    was due then (the at-risk share), else fully (the plain share)."""

    decay: float = 1.0
    gaps: np.ndarray | None = None


PLAIN = ShareRule()


def share_rule(decay: float, at_risk: bool, gaps: np.ndarray) -> ShareRule:
    """The rule of a kernel with this ``decay``, ``at_risk`` flag and ``gaps`` — the one place
    that says the at-risk share reads the gaps and the plain share does not."""
    return ShareRule(decay, gaps if at_risk else None)


@dataclass(frozen=True)
class HistoryKernel:
    """Repurchase rates by (recency ratio, visit share, count) bucket and per-item gap in days."""

    rates: np.ndarray  # SHAPE: ratio, share, count and baskets-ago buckets
    gap_days: np.ndarray  # [n_items] typical days between repurchases of each item
    decay: float = 1.0  # per basket back, the weight of a past basket in the visit share
    at_risk: bool = False  # share of the visits at which the item was due, not of all visits

    @property
    def share_rule(self) -> ShareRule:
        """How this kernel's visit share is counted, for :func:`customer_histories`."""
        return share_rule(self.decay, self.at_risk, self.gap_days)

    def weight(
        self,
        items: np.ndarray,
        days_ago: np.ndarray,
        count: np.ndarray,
        share: np.ndarray,
        baskets_ago: np.ndarray,
    ) -> np.ndarray:
        """Weights of ``items`` last bought ``days_ago`` ago and ``baskets_ago`` baskets ago,
        ``count`` times, in a ``share`` of the person's visits (:func:`visit_share`)."""
        ratio = np.maximum(days_ago, 0.0) / self.gap_days[items]
        rb = np.searchsorted(RATIO_EDGES, ratio, side="right")
        sb = np.searchsorted(SHARE_EDGES, share, side="right")
        cb = np.searchsorted(COUNT_EDGES, count, side="right")
        bb = np.searchsorted(BASKETS_EDGES, baskets_ago, side="right")
        rates: np.ndarray = self.rates[rb, sb, cb, bb]
        return rates

    def weights(self, index: dict[K, int], purchases: Iterable[tuple[K, float]]) -> list[tuple[K, float]]:
        """Turn purchase events ``(sku, days_ago)`` into one ``(sku, weight)`` per known sku.

        ``index`` maps sku → item index. A visit is a distinct ``days_ago`` value. Events with an
        unknown sku or a non-finite or negative ``days_ago`` are ignored.
        """
        keys, _, w = self.weigh(index, purchases)
        return list(zip(keys, w.tolist(), strict=True))

    def weigh(
        self, index: dict[K, int], purchases: Iterable[tuple[K, float]]
    ) -> tuple[list[K], np.ndarray, np.ndarray]:
        """:meth:`weights` as the skus (in first-purchase order), their item indices and weights."""
        columns: dict[K, int] = {}
        event_cols: list[int] = []
        event_days: list[float] = []
        for key, days in purchases:
            if not isinstance(days, (int, float)) or not np.isfinite(days) or days < 0:
                continue
            if index.get(key) is None:
                continue
            event_cols.append(columns.setdefault(key, len(columns)))
            event_days.append(float(days))
        if not columns:
            return [], np.zeros(0, dtype=np.int64), np.zeros(0)
        keys = list(columns)
        cols = np.array(event_cols)
        ago = np.array(event_days)
        # visits, most recent first: a visit's rank + 1 is "baskets ago"
        recent, rank = np.unique(np.round(ago, 4), return_inverse=True)
        presence = np.zeros((len(recent), len(keys)), dtype=bool)
        presence[rank, cols] = True
        last = np.full(len(keys), np.inf)
        np.minimum.at(last, cols, ago)
        items = np.array([index[k] for k in keys], dtype=np.int64)
        age = self.decay ** np.arange(len(recent), dtype=np.float64)  # weight of the visit r back
        if self.at_risk:
            due = _due(presence[::-1], -recent[::-1], self.gap_days[items])[::-1]
            share = (presence * age[:, None]).sum(axis=0) / ((due * age[:, None]).sum(axis=0) + 1.0)
        else:
            share = (presence * age[:, None]).sum(axis=0) / (age.sum() + 1.0)
        w = self.weight(
            items,
            last,
            presence.sum(axis=0),
            share,
            np.searchsorted(recent, np.round(last, 4)) + 1,
        )
        return keys, items, w

    def to_json(self) -> dict[str, Any]:
        return {
            "ratio_edges": list(RATIO_EDGES),
            "share_edges": list(SHARE_EDGES),
            "count_edges": list(COUNT_EDGES),
            "baskets_edges": list(BASKETS_EDGES),
            "rates": np.round(self.rates, 6).tolist(),
            "gap_days": np.round(self.gap_days, 4).tolist(),
            "decay": self.decay,
            "at_risk": self.at_risk,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], n_items: int) -> HistoryKernel:
        rates = np.asarray(data["rates"], dtype=np.float64)
        gaps = np.asarray(data["gap_days"], dtype=np.float64)
        if rates.shape != SHAPE or gaps.shape != (n_items,) or not (gaps > 0).all():
            raise ValueError("history kernel does not match this model")
        if not (np.isfinite(rates).all() and 0 <= rates.min() and rates.max() <= 1):
            raise ValueError("history kernel rates must be repurchase rates in [0, 1]")
        decay = float(data.get("decay", 1.0))
        if not 0.0 < decay <= 1.0:
            raise ValueError("history kernel decay must be in (0, 1]")
        at_risk = data.get("at_risk", False)
        if not isinstance(at_risk, bool):
            raise ValueError("history kernel at_risk must be true or false")
        return cls(rates, gaps, decay, at_risk)


@dataclass(frozen=True)
class History:
    """What a customer had bought before basket ``basket``."""

    basket: int
    items: np.ndarray
    counts: np.ndarray
    days_ago: np.ndarray
    visits: int
    baskets_ago: np.ndarray  # 1 = bought in the previous basket
    share: np.ndarray  # decayed share of the earlier baskets holding the item


Block = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
SHAPE = (len(RATIO_EDGES) + 1, len(SHARE_EDGES) + 1, len(COUNT_EDGES) + 1, len(BASKETS_EDGES) + 1)


def _customer_blocks(ds: Dataset, rule: ShareRule) -> Iterator[Block]:
    """Per customer with ≥ 2 baskets: first basket, its items, presence, counts-before, last-seen.

    ``presence[j, x]``: basket j holds local item x; ``before[j, x]``: purchases of x in baskets
    < j; ``last[j, x]``: time of the latest of those (−inf if none); ``last_j[j, x]``: its
    basket position (−1 if none).
    """
    starts = np.flatnonzero(np.r_[True, ds.customer[1:] != ds.customer[:-1]])
    ends = np.r_[starts[1:], ds.n_baskets]
    for lo, hi in zip(starts, ends, strict=True):
        if hi - lo < 2:
            continue
        items = ds.items[ds.indptr[lo] : ds.indptr[hi]]
        local, inverse = np.unique(items, return_inverse=True)
        rows = np.repeat(np.arange(hi - lo), np.diff(ds.indptr[lo : hi + 1]))
        presence = np.zeros((hi - lo, len(local)), dtype=bool)
        presence[rows, inverse] = True
        before = np.zeros(presence.shape, dtype=np.int64)
        before[1:] = np.cumsum(presence, axis=0)[:-1]
        stamped = np.where(presence, ds.time[lo:hi, None].astype(np.float64), -np.inf)
        last = np.full(presence.shape, -np.inf)
        last[1:] = np.maximum.accumulate(stamped, axis=0)[:-1]
        position = np.where(presence, np.arange(hi - lo)[:, None], -1)
        last_j = np.full(presence.shape, -1, dtype=np.int64)
        last_j[1:] = np.maximum.accumulate(position, axis=0)[:-1]
        if rule.gaps is None:
            share = visit_share(presence, rule.decay)
        else:
            share = at_risk_share(presence, ds.time[lo:hi] / 86400.0, rule.gaps[local], rule.decay)
        yield int(lo), local, presence, before, last, last_j, share


def visit_share(presence: np.ndarray, decay: float, due: np.ndarray | None = None) -> np.ndarray:
    """Row j: Σ_{i<j} decay^(j−1−i)·presence[i] ÷ (Σ_{i<j} decay^(j−1−i)·due[i] + 1), per item.

    ``due`` (rows as ``presence``) says how much each past visit counts; None counts every
    visit fully (the plain share). The "+ 1" keeps a single past basket from reading as a
    certain habit (as count ÷ (visits + 1) did). Summed basket by basket in order, so
    identical on every machine."""
    out = np.zeros(presence.shape)
    bought = np.zeros(presence.shape[1])
    total = np.zeros(presence.shape[1])
    for j in range(1, len(presence)):
        bought = decay * bought + presence[j - 1]
        total = decay * total + (1.0 if due is None else due[j - 1])
        out[j] = bought / (total + 1.0)
    return out


def at_risk_share(presence: np.ndarray, days: np.ndarray, gaps: np.ndarray, decay: float) -> np.ndarray:
    """Row j: the item's purchases in baskets < j ÷ (the visits < j at which it was *due* + 1).

    A visit counts as much as the item was due then, ``1 − exp(−(d / gap)²)`` for ``d`` days
    since its previous purchase (1 before the first): a staple bought on every other visit
    because it lasts two visits is a sure habit, not a 50 % one. ``days`` are the baskets'
    times in days, ``gaps`` the items' repurchase gaps (:func:`visit_share` with that ``due``;
    each term rounded to 1e-6, so identical on every machine)."""
    return visit_share(presence, decay, _due(presence, days, gaps))


def _due(presence: np.ndarray, days: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """How due each item was at each basket (rows in time order): ``1 − exp(−(d / gap)²)`` for
    ``d`` days since its latest purchase in an earlier basket, 1 if there is none; rounded to
    1e-6 (``expm1`` may differ in the last bit between machines)."""
    stamped = np.where(presence, days[:, None], -np.inf)
    before = np.full(presence.shape, -np.inf)
    before[1:] = np.maximum.accumulate(stamped, axis=0)[:-1]
    with np.errstate(invalid="ignore"):
        since = days[:, None] - before  # inf where never bought before
    due: np.ndarray = np.round(-np.expm1(-np.square(since / gaps)), 6)
    return due


def customer_histories(ds: Dataset, targets: np.ndarray | None = None, rule: ShareRule = PLAIN) -> Iterator[History]:
    """For every basket (or those flagged in ``targets``) the state of its customer's history,
    its visit share counted by ``rule`` (a kernel's :attr:`HistoryKernel.share_rule`).

    Baskets with no earlier basket of the same customer are skipped.
    """
    for lo, local, _, before, last, last_j, share in _customer_blocks(ds, rule):
        for j in range(1, len(before)):
            if targets is not None and not targets[lo + j]:
                continue
            seen = before[j] > 0
            yield History(
                lo + j,
                local[seen],
                before[j][seen],
                (ds.time[lo + j] - last[j][seen]) / 86400.0,
                j,
                j - last_j[j][seen],
                share[j][seen],
            )


def _gap_days(ds: Dataset, shrink: float = 3.0) -> np.ndarray:
    """Per item, the geometric mean gap between a customer's consecutive purchases, shrunk."""
    sizes = np.diff(ds.indptr)
    cust = np.repeat(ds.customer, sizes)
    when = np.repeat(ds.time, sizes) / 86400.0
    order = np.lexsort((when, ds.items, cust))
    c, i, t = cust[order], ds.items[order], when[order]
    same = (c[1:] == c[:-1]) & (i[1:] == i[:-1])
    gaps = np.maximum(t[1:] - t[:-1], 0.5)[same]
    gap_items = i[1:][same]
    logs = np.log(gaps)
    overall = float(np.median(logs)) if len(logs) else np.log(7.0)
    total = np.bincount(gap_items, logs, ds.n_items)
    n = np.bincount(gap_items, minlength=ds.n_items)
    return np.exp((total + shrink * overall) / (n + shrink))


def fit_history_kernel(
    ds: Dataset, prior_strength: float = 20.0, decay: float = 1.0, base: float = 0.0, at_risk: bool = False
) -> tuple[HistoryKernel, np.ndarray]:
    """Learn the repurchase-rate table and each item's repeat propensity (ratio to the table).

    Rates are shrunk toward the overall repurchase rate, propensities toward 1. With ``base``
    > 0 they are the *excess* over ``base`` × the item's basket frequency: the model adds the
    repeat term to its own "bought anyway" part (popularity, taste), so a popular item bought
    at its usual rate is not counted twice, and what is left is the person's staples.
    """
    gaps = np.round(_gap_days(ds), 4)  # as stored in history.json, which serving reads
    shape = SHAPE
    cells_all, bought_all, items_all = [], [], []
    blocks = _customer_blocks(ds, share_rule(decay, at_risk, gaps))
    for lo, local, presence, before, last, last_j, shares in blocks:
        seen = before > 0
        jj, xx = np.nonzero(seen)
        count = before[jj, xx]
        days = (ds.time[lo + jj] - last[jj, xx]) / 86400.0
        ratio = days / gaps[local[xx]]
        share = shares[jj, xx]
        cells_all.append(
            np.ravel_multi_index(
                (
                    np.searchsorted(RATIO_EDGES, ratio, side="right"),
                    np.searchsorted(SHARE_EDGES, share, side="right"),
                    np.searchsorted(COUNT_EDGES, count, side="right"),
                    np.searchsorted(BASKETS_EDGES, jj - last_j[jj, xx], side="right"),
                ),
                shape,
            )
        )
        bought_all.append(presence[jj, xx])
        items_all.append(local[xx])
    if not cells_all:
        return HistoryKernel(np.full(shape, 0.05), gaps, decay, at_risk), np.ones(ds.n_items)
    cells = np.concatenate(cells_all)
    items = np.concatenate(items_all)
    bought = np.concatenate(bought_all).astype(np.float64)
    if base > 0:
        bought -= base * (np.bincount(ds.items, minlength=ds.n_items) / ds.n_baskets)[items]
    size = int(np.prod(shape))
    hits = np.bincount(cells, bought, size).reshape(shape)
    trials = np.bincount(cells, minlength=size).reshape(shape).astype(np.float64)
    overall = hits.sum() / max(trials.sum(), 1.0)
    rates = np.round(np.maximum((hits + prior_strength * overall) / (trials + prior_strength), MIN_RATE), 6)
    expected = np.bincount(items, rates.ravel()[cells], ds.n_items)
    observed = np.bincount(items, bought, ds.n_items)
    propensity = np.maximum((observed + 2.0) / (expected + 2.0), MIN_PROPENSITY)
    return HistoryKernel(rates, gaps, decay, at_risk), propensity
