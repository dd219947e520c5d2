"""Training: count statistics, one symmetric factorisation, a sparse complement table, then a
few mixing weights. numpy only (no scipy), so the store install can train.

Components, each a log-lift (or, for the mixture terms, a probability):

* ``prior``  — log item popularity (smoothed basket frequency);
* ``emb_t``  — item embeddings from the top eigenvectors of the shrunk positive-PMI item-item
  co-occurrence matrix, so ``mean(E[basket]) @ Eᵀ`` approximates the basket's mean lift;
* ``w_ctx``  — per context slot, the shrunk log-lift of each item (naive-Bayes style);
* ``partners`` / ``excess`` — each item's strongest specific complements (:mod:`models.factors`);
* history kernel and per-item ``repeat`` propensity (see :mod:`models.history`), raw
  repurchase rates or their excess over the item's basket frequency.

Mixing weights (basket, user taste, context, repeat, taste, complements, repeat lift) and the
kernel's share (of all visits or at-risk), its decay and base are chosen by
coordinate search on a validation split (each customer's last *training* basket), the
components are then refitted on all training baskets. Deterministic across machines: exact
counting, fixed start vectors and iteration counts, stable sorts, validation scores rounded
before ranking with ties by item index, every exported weight rounded to a float16 value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .cooccur import Sparse, cooccurrence, item_counts, rows_sum
from .data import Dataset
from .factors import complements, embeddings, quantize
from .history import BASES, DECAYS, HistoryKernel, fit_history_kernel
from .holdout import Requests, holdout_requests, pad_hidden, ranking_metrics, validation_mask
from .scoring import G_CLIP, ScoringParams

__all__ = ["Components", "TrainConfig", "fit_components", "train_params"]


@dataclass(frozen=True)
class TrainConfig:
    dim: int = 64
    pmi_shrink: float = 2.0
    ctx_prior: float = 100.0
    category_ctx_prior: float = 50.0
    taste_prior: float = 5.0
    complement_width: int = 16
    complement_shrink: float = 10.0
    share_decays: tuple[float, ...] = DECAYS
    repeat_bases: tuple[float, ...] = BASES
    at_risk_shares: tuple[bool, ...] = (False, True)
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
    partners: np.ndarray  # [n, width] int32 complement partners, -1 = none
    excess: np.ndarray  # [n, width] their excess probability P(j | i) - P(j)


@dataclass(frozen=True)
class Mixing:
    a_basket: float = 1.0
    a_user: float = 0.5
    a_ctx: float = 1.0
    a_repeat: float = 1.0
    a_taste: float = 1.0
    a_comp: float = 1.0
    a_lift: float = 0.0


def _context_joint(ds: Dataset, n_cat: int, category: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per context slot: baskets, baskets holding each item, baskets holding each category."""
    ctx = ds.context_matrix().astype(np.float64)
    slot_counts = ctx.sum(axis=0)[:, None]
    line_ctx = np.repeat(ctx, np.diff(ds.indptr), axis=0)
    joint = np.stack([np.bincount(ds.items, line_ctx[:, s], ds.n_items) for s in range(ctx.shape[1])])
    cat_joint = np.stack([np.bincount(category, joint[s], n_cat) for s in range(ctx.shape[1])])
    return slot_counts, joint, cat_joint


def fit_components(
    ds: Dataset, cfg: TrainConfig, decay: float = 1.0, base: float = 0.0, at_risk: bool = False
) -> Components:
    """Fit every count-based component on ``ds`` (no parameters are tuned here)."""
    counts = item_counts(ds)
    n_b, n = ds.n_baskets, ds.n_items
    p_item = (counts + 0.5) / (n_b + 0.5 * n)
    prior = np.log(p_item)
    co = cooccurrence(ds)
    emb_t = embeddings(co, counts, n_b, cfg.dim, cfg.pmi_shrink)
    partners, excess = complements(co, counts, n_b, cfg.complement_width, cfg.complement_shrink)
    category = category_codes(ds)
    n_cat = int(category.max()) + 1
    cat_counts = np.bincount(category, counts, n_cat)
    share = (cat_counts + 1.0) / (cat_counts.sum() + n_cat)
    slot_counts, joint, cat_joint = _context_joint(ds, n_cat, category)
    beta = cfg.category_ctx_prior
    cat_lift = (cat_joint + beta * share) / ((slot_counts + beta) * share)
    alpha = cfg.ctx_prior
    target = p_item * cat_lift[:, category]
    w_ctx = np.log((joint + alpha * target) / ((slot_counts + alpha) * p_item))
    kernel, repeat = fit_history_kernel(ds, decay=decay, base=base, at_risk=at_risk)
    return Components(prior, emb_t, w_ctx, repeat, kernel, category, share, partners, excess)


def category_codes(ds: Dataset) -> np.ndarray:
    """Category code per item, codes in order of first appearance in the catalog."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(item.category, len(codes)) for item in ds.catalog.items], dtype=np.int64)


def category_taste(history: np.ndarray, category: np.ndarray, share: np.ndarray, prior: float) -> np.ndarray:
    """Per request, the log-lift of each category in the distinct items of its history."""
    valid = history >= 0
    cats = category[np.where(valid, history, 0)]
    counts = np.zeros((len(history), len(share)), dtype=np.float32)
    rows = np.repeat(np.arange(len(history)), history.shape[1])
    np.add.at(counts, (rows, cats.ravel()), valid.ravel().astype(np.float32))
    total = counts.sum(axis=1, keepdims=True)
    share32 = share.astype(np.float32)
    taste: np.ndarray = np.log((counts + prior * share32) / ((total + prior) * share32))
    return taste


def partner_matrix(partners: np.ndarray, values: np.ndarray) -> Sparse:
    """The complement table as a sparse [n, n] matrix (rows in order)."""
    valid = partners >= 0
    rows = np.repeat(np.arange(len(partners)), partners.shape[1]).reshape(partners.shape)
    n = len(partners)
    return Sparse(
        rows[valid].astype(np.int64), partners[valid].astype(np.int64), np.asarray(values, np.float64)[valid], (n, n)
    )


#: what :func:`_parts` returns: five dense [R, n] float64 parts, the [R, n] input-basket mask,
#: and the (rows, items, repeat, complement) arrays of the sparse mixture terms
ScoreParts = tuple[Any, ...]


def _parts(comp: Components, req: Requests, cfg: TrainConfig) -> ScoreParts:
    """The mixing-free score parts of each request (float64): dense basket, user, context,
    prior and taste parts, the input-basket mask, and the (row, item, repeat, complement) parts
    of the mixture terms where either is non-zero."""

    def mean(idx: np.ndarray, w: np.ndarray, floor: float) -> np.ndarray:
        vec = comp.emb_t[:, np.where(idx >= 0, idx, 0)]
        weighted: np.ndarray = ((vec * w[None]).sum(axis=2) / np.maximum(w.sum(axis=1), floor)).T
        return weighted

    bmask = (req.baskets >= 0).astype(float)
    hw = np.where(req.history >= 0, req.history_weights, 0.0).astype(np.float64)
    basket = mean(req.baskets, bmask, 1.0) @ comp.emb_t
    user = mean(req.history, hw, 1e-6) @ comp.emb_t
    ctx = req.context.astype(np.float64) @ comp.w_ctx
    rep = rows_sum(
        Sparse(np.arange(comp.repeat.size), np.arange(comp.repeat.size), comp.repeat, (comp.repeat.size,) * 2),
        req.history,
        hw,
    )
    in_basket = np.zeros(basket.shape, dtype=bool)
    brows = np.repeat(np.arange(len(rep)), req.baskets.shape[1])
    valid = req.baskets.ravel() >= 0
    in_basket[brows[valid], req.baskets.ravel()[valid]] = True
    taste = category_taste(req.history, comp.category, comp.category_share, cfg.taste_prior)
    taste = taste[:, comp.category].astype(np.float64)
    pairs = rows_sum(partner_matrix(comp.partners, comp.excess), req.baskets)
    # rounded once here: BLAS and SIMD logs leave last-bit differences between machines, and
    # everything _objective does with these is elementwise, hence exact and the same anywhere
    dense = [np.round(x, 7) for x in (basket, user, ctx, np.broadcast_to(comp.prior, ctx.shape), taste)]
    rows, cols = np.nonzero((rep != 0) | (pairs != 0))
    mixed = (rows, cols, np.round(rep[rows, cols], 7), np.round(pairs[rows, cols], 7))
    return (*dense, in_basket, mixed)


def _objective(parts: ScoreParts, mix: Mixing, hidden: np.ndarray) -> float:
    basket, user, ctx, prior, taste, in_basket, (rows, cols, rep, pairs) = parts
    g = mix.a_basket * basket + mix.a_user * user + mix.a_ctx * ctx + prior + mix.a_taste * taste
    # ties broken by item index, so the ranking cannot depend on how argpartition orders equal
    # values (its SIMD and scalar versions differ)
    score = g - np.arange(g.shape[1]) * 1e-12
    at = g[rows, cols]
    extra = mix.a_repeat * rep * (1.0 + mix.a_lift * pairs) + mix.a_comp * pairs
    score[rows, cols] += np.round(np.log1p(extra * np.exp(-np.clip(at, -G_CLIP, G_CLIP))), 9)
    score[in_basket] = -np.inf
    top = np.argpartition(-score, 10, axis=1)[:, :10]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1, "stable"), 1)
    m = ranking_metrics(top, hidden)
    return m["recall@10"] + m["ndcg@10"]


GRID = {
    "a_basket": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
    "a_user": (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0),
    "a_ctx": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "a_repeat": (0.3, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0),
    "a_taste": (0.0, 0.5, 1.0, 1.5, 2.0),
    "a_comp": (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0),
    "a_lift": (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0),
}
MAX_VALIDATION = 1000


def tune_mixing(parts: ScoreParts, hidden: list[np.ndarray]) -> tuple[Mixing, float]:
    """Coordinate search over :data:`GRID`, two sweeps; ties keep the earlier value."""
    best = Mixing()
    padded = pad_hidden(hidden)
    best_value = _objective(parts, best, padded)
    for _ in range(2):
        for name, values in GRID.items():
            for value in values:
                trial = replace(best, **{name: value})
                score = _objective(parts, trial, padded)
                if score > best_value + 1e-9:
                    best, best_value = trial, score
    return best, best_value


def train_params(train: Dataset, cfg: TrainConfig) -> tuple[ScoringParams, HistoryKernel, dict[str, Any]]:
    """Tune on a validation split of ``train``, refit on all of it; return scoring params."""
    val_mask = validation_mask(train)
    fit = train.subset(~val_mask)
    val_mask &= np.cumsum(val_mask) <= MAX_VALIDATION
    comp = fit_components(fit, cfg, cfg.share_decays[0])
    mix, value, decay, base, at_risk = Mixing(), float("nan"), float(cfg.share_decays[0]), 0.0, False
    candidates = [
        (float(d), float(b), bool(r))
        for r in (cfg.at_risk_shares or (False,))
        for d in cfg.share_decays
        for b in (cfg.repeat_bases or (0.0,))
    ]
    for cand_decay, cand_base, cand_risk in candidates:
        kernel, repeat = fit_history_kernel(fit, decay=cand_decay, base=cand_base, at_risk=cand_risk)
        comp = replace(comp, kernel=kernel, repeat=repeat)
        req = holdout_requests(train, val_mask, kernel, seed=cfg.validation_seed)
        if len(req) < 20:
            break
        trial, trial_value = tune_mixing(_parts(comp, req, cfg), req.hidden)
        if not trial_value <= value + 1e-9:  # the first candidate, or a better one
            mix, value, decay, base, at_risk = trial, trial_value, cand_decay, cand_base, cand_risk
    final = fit_components(train, cfg, decay, base, at_risk)

    params = ScoringParams(
        emb_t=quantize(final.emb_t),
        w_ctx=quantize(mix.a_ctx * final.w_ctx),
        prior=quantize(final.prior),
        repeat=quantize(mix.a_repeat * final.repeat),
        a_basket=mix.a_basket,
        a_user=mix.a_user,
        category=final.category,
        category_share=quantize(final.category_share),
        a_taste=mix.a_taste,
        taste_prior=cfg.taste_prior,
        partners=final.partners,
        partner_weights=quantize(mix.a_comp * final.excess),
        partner_lift=quantize(mix.a_lift * final.excess) if mix.a_lift > 0 else None,
    )
    info = {
        "mixing": {k: float(v) for k, v in vars(mix).items()},
        "share_decay": decay,
        "repeat_base": base,
        "at_risk_share": at_risk,
        "validation_requests": len(req),
        "validation_recall_plus_ndcg@10": round(float(value), 6),
    }
    return params, final.kernel, info
