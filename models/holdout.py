"""The held-out protocol shared by validation (in training) and evaluation, and its metrics.

For each target basket (a customer's last one): its items are shuffled with a fixed seed, the
first half (rounded down) is the input basket, the rest is hidden and must be recovered; the
customer's earlier baskets are the history, the basket's own context is the context. Baskets of
fewer than two items are skipped. recall@k = hits / |hidden|; NDCG@k uses binary relevance with
the ideal DCG of min(|hidden|, k) hits; hit-rate@k = at least one hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from .data import EPOCH, Dataset
from .history import HistoryKernel, customer_histories

__all__ = [
    "Requests",
    "holdout_requests",
    "pad_hidden",
    "per_request_metrics",
    "ranking_metrics",
    "repeat_explore",
    "split_masks",
    "validation_mask",
]


@dataclass(frozen=True)
class Requests:
    """A batch of held-out requests in model-input form, plus what is needed to score them."""

    baskets: np.ndarray  # [R, Mb] int64, -1 padded
    history: np.ndarray  # [R, Mh] int64, -1 padded
    history_weights: np.ndarray  # [R, Mh] float32
    history_counts: np.ndarray  # [R, Mh] float32 (for the personal-frequency baseline)
    context: np.ndarray  # [R, ctx_dim] float32
    hidden: list[np.ndarray]
    basket_index: np.ndarray  # [R] index into the dataset the requests came from
    customer_ids: list[str] = field(default_factory=list)  # [R] whose basket it is
    seen: list[np.ndarray] = field(default_factory=list)  # [R] every item bought before

    def __len__(self) -> int:
        return len(self.hidden)


def _pad(rows: list[np.ndarray], fill: float, dtype: type) -> np.ndarray:
    width = max([1] + [len(r) for r in rows])
    out: np.ndarray = np.full((len(rows), width), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def holdout_requests(
    ds: Dataset,
    targets: np.ndarray,
    kernel: HistoryKernel,
    *,
    seed: int = 0,
    max_history: int = 128,
) -> Requests:
    """Requests for the baskets flagged in ``targets`` (bool), history from earlier ones."""
    histories = {h.basket: h for h in customer_histories(ds, targets, kernel.share_rule)}
    rng = np.random.default_rng(seed)
    inputs, hidden, hist, weights, counts, index, seen = [], [], [], [], [], [], []
    ctx = ds.context_matrix()
    for b in np.flatnonzero(targets).tolist():
        items = ds.basket(b)
        if len(items) < 2:
            continue
        perm = rng.permutation(items)
        half = len(items) // 2
        inputs.append(perm[:half])
        hidden.append(np.sort(perm[half:]))
        h = histories.get(int(b))
        if h is None:
            hi, hw, hc = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        else:
            hi, hc = h.items, h.counts.astype(np.float64)
            seen.append(h.items)
            hw = kernel.weight(h.items, h.days_ago, h.counts, h.share, h.baskets_ago)
            if len(hi) > max_history:
                keep = np.argsort(-hw, kind="stable")[:max_history]
                hi, hw, hc = hi[keep], hw[keep], hc[keep]
        hist.append(hi)
        weights.append(hw)
        counts.append(hc)
        index.append(b)
        if h is None:
            seen.append(hi)
    index_arr = np.array(index, dtype=np.int64)
    return Requests(
        _pad(inputs, -1, np.int64),
        _pad(hist, -1, np.int64),
        _pad(weights, 0.0, np.float32),
        _pad(counts, 0.0, np.float32),
        ctx[index_arr] if len(index_arr) else np.zeros((0, ctx.shape[1]), np.float32),
        hidden,
        index_arr,
        [ds.customer_ids[ds.customer[b]] for b in index_arr],
        seen,
    )


def pad_hidden(hidden: list[np.ndarray]) -> np.ndarray:
    """Hidden item sets as one [R, max] int64 matrix padded with -1."""
    return _pad(hidden, -1, np.int64)


def per_request_metrics(top: np.ndarray, hidden: list[np.ndarray] | np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """recall@k, NDCG@k and hit-rate@k of each ranked item list ``top`` [R, ≥k] (float64 [R])."""
    truth = pad_hidden(hidden) if isinstance(hidden, list) else hidden
    if top.shape[1] < k:
        top = np.concatenate([top, np.full((len(top), k - top.shape[1]), -1)], axis=1)
    sizes = (truth >= 0).sum(axis=1)
    rel = (top[:, :k, None] == np.where(truth >= 0, truth, -2)[:, None, :]).any(axis=2)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(sizes, k) - 1]
    n_hit = rel.sum(axis=1)
    return {
        f"recall@{k}": n_hit / sizes,
        f"ndcg@{k}": (rel * discounts).sum(axis=1) / ideal,
        f"hit_rate@{k}": (n_hit > 0).astype(np.float64),
    }


def ranking_metrics(top: np.ndarray, hidden: list[np.ndarray] | np.ndarray, k: int = 10) -> dict[str, float]:
    """Mean recall@k, NDCG@k and hit-rate@k of ranked item lists ``top`` [R, ≥k]."""
    per = per_request_metrics(top, hidden, k)
    n = max(len(top), 1)
    return {name: round(float(v.sum() / n), 6) for name, v in per.items()}


def repeat_explore(top: np.ndarray, hidden: list[np.ndarray], seen: list[np.ndarray], k: int = 10) -> dict[str, float]:
    """Recall@k split into repeat items (bought before) and explore items (Li et al., TOIS 2023).

    ``recall_repeat@k`` averages hits ÷ |hidden repeat items| over the requests that have any,
    ``recall_explore@k`` likewise for the new items; ``repeat_share@k`` is the share of the
    top k that the person had bought before.
    """
    rep, exp, share = [], [], []
    for row, truth, before in zip(top[:, :k], hidden, seen, strict=True):
        old = np.isin(truth, before)
        hits = np.isin(truth, row)
        if old.any():
            rep.append(hits[old].mean())
        if (~old).any():
            exp.append(hits[~old].mean())
        share.append(np.isin(row[row >= 0], before).sum() / k)
    return {
        f"recall_repeat@{k}": round(float(np.mean(rep)), 6) if rep else 0.0,
        f"recall_explore@{k}": round(float(np.mean(exp)), 6) if exp else 0.0,
        f"repeat_share@{k}": round(float(np.mean(share)), 6) if share else 0.0,
    }


SPLITS = ("last", "time")


def validation_mask(train: Dataset) -> np.ndarray:
    """Each customer's last training basket, where that customer has an earlier one."""
    mask = train.last_basket_mask()
    mask &= np.r_[False, train.customer[1:] == train.customer[:-1]]
    return mask


def split_masks(ds: Dataset, split: str = "last", cutoff: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(held-out targets, training baskets) of ``ds``.

    ``last``: each customer's last basket is held out, the rest trains. ``time``: baskets before
    ``cutoff`` train; each customer's first basket on or after it is held out.
    """
    if split == "last":
        targets = ds.last_basket_mask()
        return targets, ~targets
    if split != "time" or cutoff is None:
        raise ValueError(f"split must be 'last' or 'time' (with a cutoff), got {split!r}")
    edge = int((cutoff - EPOCH).total_seconds())
    train = ds.time < edge
    after = ~train
    first = after & ~np.r_[False, (ds.customer[1:] == ds.customer[:-1]) & after[:-1]]
    return first, train
