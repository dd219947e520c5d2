"""The held-out protocol shared by validation (in training) and evaluation, and its metrics.

For each target basket (a customer's last one): its items are shuffled with a fixed seed, the
first half (rounded down) is the input basket, the rest is hidden and must be recovered; the
customer's earlier baskets are the history, the basket's own context is the context. Baskets of
fewer than two items are skipped. recall@k = hits / |hidden|; NDCG@k uses binary relevance with
the ideal DCG of min(|hidden|, k) hits; hit-rate@k = at least one hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Dataset
from .history import HistoryKernel, customer_histories

__all__ = ["Requests", "holdout_requests", "pad_hidden", "ranking_metrics"]


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

    def __len__(self) -> int:
        return len(self.hidden)


def _pad(rows: list[np.ndarray], fill: float, dtype: type) -> np.ndarray:
    width = max([1] + [len(r) for r in rows])
    out = np.full((len(rows), width), fill, dtype=dtype)
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
    histories = {h.basket: h for h in customer_histories(ds, targets)}
    rng = np.random.default_rng(seed)
    inputs, hidden, hist, weights, counts, index = [], [], [], [], [], []
    ctx = ds.context_matrix()
    for b in np.flatnonzero(targets):
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
            hw = kernel.weight(h.items, h.days_ago, h.counts, h.visits)
            if len(hi) > max_history:
                keep = np.argsort(-hw, kind="stable")[:max_history]
                hi, hw, hc = hi[keep], hw[keep], hc[keep]
        hist.append(hi)
        weights.append(hw)
        counts.append(hc)
        index.append(b)
    index_arr = np.array(index, dtype=np.int64)
    return Requests(
        _pad(inputs, -1, np.int64),
        _pad(hist, -1, np.int64),
        _pad(weights, 0.0, np.float32),
        _pad(counts, 0.0, np.float32),
        ctx[index_arr] if len(index_arr) else np.zeros((0, ctx.shape[1]), np.float32),
        hidden,
        index_arr,
    )


def pad_hidden(hidden: list[np.ndarray]) -> np.ndarray:
    """Hidden item sets as one [R, max] int64 matrix padded with -1."""
    return _pad(hidden, -1, np.int64)


def ranking_metrics(
    top: np.ndarray, hidden: list[np.ndarray] | np.ndarray, k: int = 10
) -> dict[str, float]:
    """Mean recall@k, NDCG@k and hit-rate@k of ranked item lists ``top`` [R, ≥k]."""
    truth = pad_hidden(hidden) if isinstance(hidden, list) else hidden
    if top.shape[1] < k:
        top = np.concatenate([top, np.full((len(top), k - top.shape[1]), -1)], axis=1)
    n = max(len(truth), 1)
    sizes = (truth >= 0).sum(axis=1)
    rel = (top[:, :k, None] == np.where(truth >= 0, truth, -2)[:, None, :]).any(axis=2)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(sizes, k) - 1]
    n_hit = rel.sum(axis=1)
    return {
        f"recall@{k}": round(float((n_hit / sizes).sum() / n), 6),
        f"ndcg@{k}": round(float(((rel * discounts).sum(axis=1) / ideal).sum() / n), 6),
        f"hit_rate@{k}": round(float((n_hit > 0).sum() / n), 6),
    }
