"""The references the model is measured against, each a scorer of held-out requests.

* ``popularity`` — basket frequency;
* ``personal_top_frequency`` — the person's own purchase counts, ties by popularity;
* ``item_knn`` — sum of cosine co-occurrence with the input half-basket;
* ``tifu_knn`` — TIFU-KNN (Hu et al., "Modeling Personalized Item Frequency Information for
  Next-basket Recommendation", SIGIR 2020): a time-decayed personal item-frequency vector
  (baskets in groups of ``m``, decay ``r_b`` within a group and ``r_g`` across groups, counted
  in baskets) blended as ``α·u + (1 − α)·mean of the k nearest users' vectors``;
* ``tifu_item_knn`` — TIFU-KNN plus item-kNN on the input half-basket, each scaled to its row
  maximum, the item part weighted by ``β``.

TIFU-KNN's and the hybrid's hyper-parameters are tuned on the validation split the model's
mixing weights are tuned on (each customer's last training basket), by recall@10 + NDCG@10.
All exclude the input basket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from .cooccur import Sparse, cooccurrence, item_counts, rows_sum
from .data import Dataset
from .holdout import Requests, ranking_metrics

__all__ = ["TIFU_GRID", "Baselines", "fit_baselines", "top_k"]

TIFU_GRID = {
    "group_size": (3, 7),
    "r_basket": (0.9, 1.0),
    "r_group": (0.7, 0.9),
    "alpha": (0.5, 0.7, 0.9, 1.0),
    "neighbours": (50, 300),
}
HYBRID_BETA = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
BATCH = 512


def top_k(scores: np.ndarray, baskets: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores per row, input-basket items excluded, ties by index."""
    scores = np.array(scores, dtype=np.float64)
    r_idx = np.repeat(np.arange(len(baskets)), baskets.shape[1])
    valid = baskets.ravel() >= 0
    scores[r_idx[valid], baskets.ravel()[valid]] = -np.inf
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, 1)), axis=1)
    return np.take_along_axis(part, order, 1)


def tifu_vectors(ds: Dataset, group_size: int, r_basket: float, r_group: float) -> np.ndarray:
    """Per customer code, the TIFU-KNN personal item-frequency vector [n_customers, n].

    Groups are formed from the latest basket backwards, so the oldest group holds the rest.
    """
    n_cust = len(ds.customer_ids)
    per = np.bincount(ds.customer, minlength=n_cust)
    first = np.r_[0, np.cumsum(per)][ds.customer]
    back = per[ds.customer] - 1 - (np.arange(ds.n_baskets) - first)  # 0 = latest basket
    groups = -(-per[ds.customer] // group_size)
    g_rev, p_rev = back // group_size, back % group_size
    full = per[ds.customer] - group_size * (groups - 1)
    size = np.where(g_rev == groups - 1, full, group_size)
    weight = r_group**g_rev * r_basket**p_rev / (size * groups)
    sizes = np.diff(ds.indptr)
    key = np.repeat(ds.customer.astype(np.int64), sizes) * ds.n_items + ds.items
    vec = np.bincount(key, np.repeat(weight, sizes), n_cust * ds.n_items)
    return vec.reshape(n_cust, ds.n_items)


def _nearest(vectors: np.ndarray, users: np.ndarray, k: int) -> np.ndarray:
    """For each of ``users``, the indices of the ``k`` nearest other users (Euclidean)."""
    v = vectors.astype(np.float32)
    norms = (v * v).sum(axis=1)
    out = np.zeros((len(users), min(k, len(v) - 1)), dtype=np.int64)
    for lo in range(0, len(users), BATCH):
        u = users[lo : lo + BATCH]
        dist = norms[u, None] + norms[None, :] - 2 * (v[u] @ v.T)
        dist[np.arange(len(u)), u] = np.inf
        part = np.argpartition(dist, out.shape[1] - 1, axis=1)[:, : out.shape[1]]
        order = np.argsort(np.take_along_axis(dist, part, 1), axis=1, kind="stable")
        out[lo : lo + BATCH] = np.take_along_axis(part, order, 1)
    return out


@dataclass(frozen=True)
class Baselines:
    """Everything fitted on the training baskets that the reference scorers need."""

    counts: np.ndarray
    cosine: Sparse
    tifu: dict[str, float]
    beta: float
    train: Dataset

    def scorers(self, req: Requests) -> Iterator[tuple[str, Callable[[slice], np.ndarray]]]:
        """(name, scores of the requests in a row slice) for every reference."""
        tie: np.ndarray = self.counts / max(self.counts.max(), 1.0) * 1e-3
        code = {c: i for i, c in enumerate(self.train.customer_ids)}
        cust = np.array([code.get(c, -1) for c in req.customer_ids], dtype=np.int64)
        t = self.tifu
        vec = tifu_vectors(self.train, int(t["group_size"]), t["r_basket"], t["r_group"])
        known = cust >= 0
        near = np.zeros((len(req), 0), np.int64)
        if known.any() and t["alpha"] < 1.0:
            near = np.zeros((len(req), min(int(t["neighbours"]), len(vec) - 1)), np.int64)
            near[known] = _nearest(vec, cust[known], int(t["neighbours"]))

        def popularity(rows: slice) -> np.ndarray:
            scores: np.ndarray = np.tile(self.counts, (rows.stop - rows.start, 1))
            return scores

        def personal(rows: slice) -> np.ndarray:
            scores: np.ndarray = personal_counts(req, rows, self.counts.shape[0]) + tie
            return scores

        def item_knn(rows: slice) -> np.ndarray:
            scores: np.ndarray = rows_sum(self.cosine, req.baskets[rows]) + tie
            return scores

        def tifu(rows: slice) -> np.ndarray:
            scores: np.ndarray = tifu_scores(vec, cust[rows], near[rows], t["alpha"]) + tie
            return scores

        def hybrid(rows: slice) -> np.ndarray:
            scores: np.ndarray = _scaled(tifu(rows) - tie) + self.beta * _scaled(item_knn(rows) - tie) + tie
            return scores

        yield from (
            ("popularity", popularity),
            ("personal_top_frequency", personal),
            ("item_knn", item_knn),
            ("tifu_knn", tifu),
            ("tifu_item_knn", hybrid),
        )


def personal_counts(req: Requests, rows: slice, n: int) -> np.ndarray:
    hist = req.history[rows]
    m = len(hist)
    out = np.zeros((m, n))
    r_idx = np.repeat(np.arange(m), hist.shape[1])
    valid = hist.ravel() >= 0
    np.add.at(out, (r_idx[valid], hist.ravel()[valid]), req.history_counts[rows].ravel()[valid])
    return out


def neighbour_mean(vec: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Per request, the mean vector of its nearest users ``near`` [R, k]."""
    pick = np.zeros((len(near), len(vec)), dtype=np.float32)
    pick[np.repeat(np.arange(len(near)), near.shape[1]), near.ravel()] = 1.0 / near.shape[1]
    return pick @ vec.astype(np.float32)  # float32: a ranking reference, 2× faster


def tifu_scores(
    vec: np.ndarray, cust: np.ndarray, near: np.ndarray, alpha: float, others: np.ndarray | None = None
) -> np.ndarray:
    """α·u + (1 − α)·mean of the neighbours' vectors (``others`` if already computed);
    customers unseen in training (−1) score 0."""
    own = np.where(cust[:, None] >= 0, vec[np.maximum(cust, 0)], 0.0)
    if alpha >= 1.0 or near.shape[1] == 0:
        return own
    if others is None:
        others = neighbour_mean(vec, near)
    return alpha * own + (1 - alpha) * others * (cust[:, None] >= 0)


def _scaled(scores: np.ndarray) -> np.ndarray:
    scaled: np.ndarray = scores / np.maximum(scores.max(axis=1, keepdims=True), 1e-12)
    return scaled


def cosine_similarity(ds: Dataset) -> tuple[np.ndarray, Sparse]:
    counts = item_counts(ds)
    co = cooccurrence(ds)
    norm = np.sqrt(np.maximum(counts, 1.0))
    return counts, co.where(slice(None), co.vals / (norm[co.rows] * norm[co.cols]))


def _tune_tifu(
    fit: Dataset, val: Requests, counts: np.ndarray, cosine: Sparse
) -> tuple[dict[str, float], float, dict[str, Any]]:
    tie: np.ndarray = counts / max(counts.max(), 1.0) * 1e-3
    code = {c: i for i, c in enumerate(fit.customer_ids)}
    cust = np.array([code.get(c, -1) for c in val.customer_ids])
    known = cust >= 0
    best: tuple[float, dict[str, float]] = (-1.0, {})
    k_max = int(max(TIFU_GRID["neighbours"]))
    for m, rb, rg in product(TIFU_GRID["group_size"], TIFU_GRID["r_basket"], TIFU_GRID["r_group"]):
        vec = tifu_vectors(fit, int(m), rb, rg)
        near_all = np.zeros((len(val), min(k_max, len(vec) - 1)), np.int64)
        if known.any():
            near_all[known] = _nearest(vec, cust[known], k_max)
        means = {k: neighbour_mean(vec, near_all[:, :k]) for k in TIFU_GRID["neighbours"]}
        for alpha, k in product(TIFU_GRID["alpha"], TIFU_GRID["neighbours"]):
            scores = tifu_scores(vec, cust, near_all[:, :k], alpha, means[k]) + tie
            m_ = ranking_metrics(top_k(scores, val.baskets, 10), val.hidden)
            value = m_["recall@10"] + m_["ndcg@10"]
            if value > best[0] + 1e-9:
                best = (value, {"group_size": m, "r_basket": rb, "r_group": rg, "alpha": alpha, "neighbours": k})
    t = best[1]
    vec = tifu_vectors(fit, int(t["group_size"]), t["r_basket"], t["r_group"])
    near = np.zeros((len(val), min(int(t["neighbours"]), len(vec) - 1)), np.int64)
    if known.any():
        near[known] = _nearest(vec, cust[known], int(t["neighbours"]))
    base = _scaled(tifu_scores(vec, cust, near, t["alpha"]))
    knn = _scaled(rows_sum(cosine, val.baskets))
    best_beta = (-1.0, 0.0)
    for beta in HYBRID_BETA:
        m_ = ranking_metrics(top_k(base + beta * knn + tie, val.baskets, 10), val.hidden)
        value = m_["recall@10"] + m_["ndcg@10"]
        if value > best_beta[0] + 1e-9:
            best_beta = (value, beta)
    info = {"validation_requests": len(val), "tifu_knn": t, "tifu_item_knn_beta": best_beta[1]}
    return t, best_beta[1], info


def fit_baselines(train: Dataset, fit: Dataset, val: Requests) -> tuple[Baselines, dict[str, Any]]:
    """Tune TIFU-KNN and the hybrid on ``val`` (requests from ``fit``), refit on ``train``."""
    if len(val) >= 20:
        fit_counts, fit_cos = cosine_similarity(fit)
        tifu, beta, info = _tune_tifu(fit, val, fit_counts, fit_cos)
    else:  # too little to tune on: a middle-of-the-grid setting
        tifu = {"group_size": 3, "r_basket": 0.9, "r_group": 0.7, "alpha": 0.9, "neighbours": 300}
        beta, info = 0.2, {"validation_requests": len(val), "tifu_knn": tifu, "tifu_item_knn_beta": 0.2}
    counts, cosine = cosine_similarity(train)
    return Baselines(counts, cosine, tifu, beta, train), info
