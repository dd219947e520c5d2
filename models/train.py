"""Training: count statistics and one symmetric factorisation, then a few mixing weights.

Components, each a log-lift so they add up like log-probabilities:

* ``prior``  — log item popularity (smoothed basket frequency);
* ``emb_t``  — item embeddings from the top eigenvectors of the shrunk positive-PMI item-item
  co-occurrence matrix, so ``mean(E[basket]) @ Eᵀ`` approximates the basket's mean lift;
* ``w_ctx``  — per context slot, the shrunk log-lift of each item (naive-Bayes style);
* history kernel and per-item ``repeat`` propensity (see :mod:`models.history`).

Mixing weights (basket, user taste, context, repeat) are chosen by coordinate search on a
validation split (each customer's last *training* basket), the components are then refitted on
all training baskets. Everything is deterministic: fixed ARPACK start vector, stable sorts,
eigenvector signs fixed, values rounded before export.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, eigsh

from .data import Dataset
from .history import HistoryKernel, fit_history_kernel
from .holdout import Requests, holdout_requests, pad_hidden, ranking_metrics
from .scoring import G_CLIP, ScoringParams

__all__ = ["Components", "TrainConfig", "fit_components", "train_params"]


@dataclass(frozen=True)
class TrainConfig:
    dim: int = 64
    pmi_shrink: float = 2.0
    ctx_prior: float = 100.0
    category_ctx_prior: float = 50.0
    taste_prior: float = 5.0
    validation_seed: int = 1


@dataclass(frozen=True)
class Components:
    prior: np.ndarray
    emb_t: np.ndarray
    w_ctx: np.ndarray
    repeat: np.ndarray
    kernel: HistoryKernel
    category: np.ndarray  # [n] int64 category code of each item
    category_share: np.ndarray  # [n_categories] share of purchases


@dataclass(frozen=True)
class Mixing:
    a_basket: float = 1.0
    a_user: float = 0.5
    a_ctx: float = 1.0
    a_repeat: float = 1.0
    a_taste: float = 1.0


def _basket_matrix(ds: Dataset) -> sp.csr_matrix:
    data = np.ones(len(ds.items), dtype=np.float64)
    return sp.csr_matrix((data, ds.items, ds.indptr), shape=(ds.n_baskets, ds.n_items))


def _embeddings(x: sp.csr_matrix, counts: np.ndarray, dim: int, shrink: float) -> np.ndarray:
    n_b, n = x.shape
    co = (x.T @ x).tocoo()
    off = co.row != co.col
    rows, cols, c = co.row[off], co.col[off], co.data[off]
    expected = counts[rows] * counts[cols] / max(n_b, 1)
    lift = np.log((c + shrink) / (expected + shrink))
    keep = lift > 0
    m = sp.csr_matrix((lift[keep], (rows[keep], cols[keep])), shape=(n, n))
    k = max(0, min(dim, n - 2))
    if n <= 200 or m.nnz == 0:
        vals, vecs = np.linalg.eigh(m.toarray())
        vals, vecs = vals[::-1][:k], vecs[:, ::-1][:, :k]
    else:
        v0 = np.cos(np.arange(n) * 0.618) + 1.5
        try:
            vals, vecs = eigsh(m, k=k, which="LA", v0=v0, tol=1e-8, maxiter=20 * n)
        except ArpackError:  # too little co-occurrence to converge: no basket signal
            vals, vecs = np.zeros(k), np.zeros((n, k))
    order = np.argsort(-vals, kind="stable")
    vals, vecs = vals[order], vecs[:, order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    emb = vecs * np.sqrt(np.maximum(vals, 0.0))
    out = np.zeros((dim, n))
    out[:k] = emb.T
    return out


def fit_components(ds: Dataset, cfg: TrainConfig) -> Components:
    """Fit every count-based component on ``ds`` (no parameters are tuned here)."""
    x = _basket_matrix(ds)
    counts = np.asarray(x.sum(axis=0)).ravel()
    n_b, n = x.shape
    p_item = (counts + 0.5) / (n_b + 0.5 * n)
    prior = np.log(p_item)
    emb_t = _embeddings(x, counts, cfg.dim, cfg.pmi_shrink)
    category = category_codes(ds)
    n_cat = int(category.max()) + 1
    to_cat = sp.csr_matrix((np.ones(n), (np.arange(n), category)), shape=(n, n_cat))
    cat_counts = counts @ to_cat
    share = (cat_counts + 1.0) / (cat_counts.sum() + n_cat)
    ctx = sp.csr_matrix(ds.context_matrix().astype(np.float64))
    slot_counts = np.asarray(ctx.sum(axis=0)).ravel()[:, None]
    joint = np.asarray((ctx.T @ x).todense())
    cat_joint = np.asarray(joint @ to_cat)
    beta = cfg.category_ctx_prior
    cat_lift = (cat_joint + beta * share) / ((slot_counts + beta) * share)
    alpha = cfg.ctx_prior
    target = p_item * cat_lift[:, category]
    w_ctx = np.log((joint + alpha * target) / ((slot_counts + alpha) * p_item))
    kernel, repeat = fit_history_kernel(ds)
    return Components(prior, emb_t, w_ctx, repeat, kernel, category, share)


def category_codes(ds: Dataset) -> np.ndarray:
    """Category code per item, codes in order of first appearance in the catalog."""
    codes: dict[str, int] = {}
    return np.array(
        [codes.setdefault(item.category, len(codes)) for item in ds.catalog.items], dtype=np.int64
    )


def category_taste(
    history: np.ndarray, category: np.ndarray, share: np.ndarray, prior: float
) -> np.ndarray:
    """Per request, the log-lift of each category in the distinct items of its history."""
    valid = history >= 0
    cats = category[np.where(valid, history, 0)]
    counts = np.zeros((len(history), len(share)), dtype=np.float32)
    rows = np.repeat(np.arange(len(history)), history.shape[1])
    np.add.at(counts, (rows, cats.ravel()), valid.ravel().astype(np.float32))
    total = counts.sum(axis=1, keepdims=True)
    share32 = share.astype(np.float32)
    return np.log((counts + prior * share32) / ((total + prior) * share32))


def _parts(comp: Components, req: Requests, cfg: TrainConfig) -> tuple[np.ndarray, ...]:
    """The mixing-free score parts of each request: basket, user, context, prior, repeat."""
    def mean(idx: np.ndarray, w: np.ndarray, floor: float) -> np.ndarray:
        vec = comp.emb_t[:, np.where(idx >= 0, idx, 0)]
        return ((vec * w[None]).sum(axis=2) / np.maximum(w.sum(axis=1), floor)).T

    bmask = (req.baskets >= 0).astype(float)
    hw = np.where(req.history >= 0, req.history_weights, 0.0)
    emb_t = comp.emb_t.astype(np.float32)
    basket = mean(req.baskets, bmask, 1.0).astype(np.float32) @ emb_t
    user = mean(req.history, hw, 1e-6).astype(np.float32) @ emb_t
    ctx = req.context @ comp.w_ctx.astype(np.float32)
    rep = np.zeros_like(basket)
    rows = np.repeat(np.arange(len(rep)), req.history.shape[1])
    np.add.at(rep, (rows, np.where(req.history >= 0, req.history, 0).ravel()), hw.ravel())
    rep *= comp.repeat.astype(np.float32)
    in_basket = np.zeros(basket.shape, dtype=bool)
    brows = np.repeat(np.arange(len(rep)), req.baskets.shape[1])
    valid = req.baskets.ravel() >= 0
    in_basket[brows[valid], req.baskets.ravel()[valid]] = True
    taste = category_taste(req.history, comp.category, comp.category_share, cfg.taste_prior)
    taste = taste[:, comp.category]
    return basket, user, ctx, comp.prior.astype(np.float32), rep, in_basket, taste


def _objective(parts: tuple[np.ndarray, ...], mix: Mixing, hidden: np.ndarray) -> float:
    basket, user, ctx, prior, rep, in_basket, taste = parts
    f = np.float32
    g = f(mix.a_basket) * basket + f(mix.a_user) * user + f(mix.a_ctx) * ctx + prior
    g += f(mix.a_taste) * taste
    score = g + np.log1p(f(mix.a_repeat) * rep * np.exp(-np.clip(g, -G_CLIP, G_CLIP)))
    score[in_basket] = -np.inf
    top = np.argpartition(-score, 10, axis=1)[:, :10]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1, "stable"), 1)
    m = ranking_metrics(top, hidden)
    return m["recall@10"] + m["ndcg@10"]


GRID = {
    "a_basket": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
    "a_user": (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0),
    "a_ctx": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "a_repeat": (0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    "a_taste": (0.0, 0.5, 1.0, 1.5, 2.0),
}
MAX_VALIDATION = 1000


def tune_mixing(parts: tuple[np.ndarray, ...], hidden: list[np.ndarray]) -> tuple[Mixing, float]:
    """Coordinate search over :data:`GRID`, two sweeps; ties keep the earlier value."""
    best = Mixing()
    hidden = pad_hidden(hidden)
    best_value = _objective(parts, best, hidden)
    for _ in range(2):
        for name, values in GRID.items():
            for value in values:
                trial = replace(best, **{name: value})
                score = _objective(parts, trial, hidden)
                if score > best_value + 1e-9:
                    best, best_value = trial, score
    return best, best_value


def train_params(train: Dataset, cfg: TrainConfig) -> tuple[ScoringParams, HistoryKernel, dict]:
    """Tune on a validation split of ``train``, refit on all of it; return scoring params."""
    val_mask = train.last_basket_mask()
    has_earlier = np.r_[False, train.customer[1:] == train.customer[:-1]]
    val_mask &= has_earlier
    fit = train.subset(~val_mask)
    comp = fit_components(fit, cfg)
    val_mask &= np.cumsum(val_mask) <= MAX_VALIDATION
    req = holdout_requests(train, val_mask, comp.kernel, seed=cfg.validation_seed)
    if len(req) >= 20:
        mix, value = tune_mixing(_parts(comp, req, cfg), req.hidden)
    else:
        mix, value = Mixing(), float("nan")
    final = fit_components(train, cfg)

    def f32(x: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(x, dtype=np.float64), 5).astype(np.float32)

    params = ScoringParams(
        emb_t=f32(final.emb_t),
        w_ctx=f32(mix.a_ctx * final.w_ctx),
        prior=f32(final.prior),
        repeat=f32(mix.a_repeat * final.repeat),
        a_basket=mix.a_basket,
        a_user=mix.a_user,
        category=final.category,
        category_share=f32(final.category_share),
        a_taste=mix.a_taste,
        taste_prior=cfg.taste_prior,
    )
    info = {
        "mixing": {k: float(v) for k, v in vars(mix).items()},
        "validation_requests": len(req),
        "validation_recall_plus_ndcg@10": round(float(value), 6),
    }
    return params, final.kernel, info
