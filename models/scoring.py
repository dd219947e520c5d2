"""The scoring function, in numpy: the reference the ONNX graph is tested against.

For a request with basket items b, history items h with weights w, and context vector c::

    q     = a_basket · mean(E[b]) + a_user · Σ w·E[h] / Σ w          (taste from basket and past)
    t_k   = log((n_k + α·share_k) / ((Σ n + α)·share_k))               (category taste: n_k =
                                                                        history items in k)
    g     = q @ Eᵀ + c @ W_ctx + prior + a_taste · t_cat(i)             (log-scale, all items)
    x_i   = W_i · repeat[i] · (1 + Σ_b L[b, i]) + Σ_{b ∈ basket} C[b, i]
                                                                       (W_i = Σ of i's weights;
                                                                        C: complement table,
                                                                        L: its lift on repeats)
    score = g + log(1 + x_i · exp(−clip(g, ±60)))                     (history items and the
                                                                        basket's partners only)
    score = −inf for items already in the basket; return the top K

i.e. log(exp(g) + W·repeat·(1 + Σ L) + Σ C): a mixture of "bought anyway", "bought again"
(more likely again when a complement is in the basket: ``L`` is the same sparse table as ``C``
with its own weight) and "bought because a complement is in the basket". The repeat, complement and exclusion terms touch only
the ≤ max_history + max_basket · width positions of a request, so the graph does one MatMul
over the catalog, one category gather, a few scatters and TopK. ``W_ctx`` already carries the
context weight, ``repeat`` the history weight and ``C`` the complement weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ScoringParams", "reference_scores", "reference_topk"]

G_CLIP = 60.0


@dataclass(frozen=True)
class ScoringParams:
    """Everything the scoring function needs; exactly the initializers of the ONNX graph."""

    emb_t: np.ndarray  # [d, n] float32
    w_ctx: np.ndarray  # [ctx_dim, n] float32
    prior: np.ndarray  # [n] float32
    repeat: np.ndarray  # [n] float32, ≥ 0
    a_basket: float
    a_user: float
    category: np.ndarray  # [n] int64 category code per item
    category_share: np.ndarray  # [n_categories] float32, overall share of purchases
    a_taste: float
    taste_prior: float
    partners: np.ndarray | None = None  # [n, width] int32 complement partners, -1 = none
    partner_weights: np.ndarray | None = None  # [n, width] float32 ≥ 0 (already × a_comp)
    partner_lift: np.ndarray | None = None  # [n, width] float32 ≥ 0 (already × a_lift)

    @property
    def n_items(self) -> int:
        return int(self.emb_t.shape[1])

    @property
    def dim(self) -> int:
        return int(self.emb_t.shape[0])

    @property
    def ctx_dim(self) -> int:
        return int(self.w_ctx.shape[0])

    def partner_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(partners [n, width] int64 with −1 for none, weights and repeat lifts [n, width]
        float32; no lift table reads as zeros)."""
        if self.partners is None or self.partner_weights is None:
            empty = np.zeros((self.n_items, 0), np.float32)
            return np.full((self.n_items, 0), -1, np.int64), empty, empty
        lift = np.zeros(self.partner_weights.shape, np.float32) if self.partner_lift is None else self.partner_lift
        return self.partners.astype(np.int64), self.partner_weights.astype(np.float32), lift.astype(np.float32)


def _masked_mean(emb_t: np.ndarray, idx: np.ndarray, weight: np.ndarray, floor: float) -> np.ndarray:
    safe = np.where(idx >= 0, idx, 0)
    vectors = emb_t[:, safe]  # [d, B, M]
    total = (vectors * weight[None]).sum(axis=2).T
    mean: np.ndarray = total / np.maximum(weight.sum(axis=1, keepdims=True), floor)
    return mean


def reference_scores(
    p: ScoringParams,
    basket: np.ndarray,
    history: np.ndarray,
    history_weights: np.ndarray,
    context: np.ndarray,
) -> np.ndarray:
    """Scores of every item, [B, n] float32, computed in float32 like the graph."""
    f32 = np.float32
    bmask = (basket >= 0).astype(f32)
    valid = history >= 0
    hw = np.where(valid, history_weights, 0).astype(f32)
    q = f32(p.a_basket) * _masked_mean(p.emb_t, basket, bmask, 1.0) + f32(p.a_user) * _masked_mean(
        p.emb_t, history, hw, 1e-6
    )
    cats = p.category[np.where(valid, history, 0)]
    counts = np.zeros((len(history), len(p.category_share)), dtype=f32)
    rows = np.repeat(np.arange(len(history)), history.shape[1])
    np.add.at(counts, (rows, cats.ravel()), valid.ravel().astype(f32))
    total = counts.sum(axis=1, keepdims=True)
    alpha, share = f32(p.taste_prior), p.category_share
    taste = np.log(counts + alpha * share) - np.log(total + alpha) - np.log(share)
    g = q.astype(f32) @ p.emb_t + context.astype(f32) @ p.w_ctx + p.prior
    scores: np.ndarray = (g + f32(p.a_taste) * taste[:, p.category]).astype(f32)
    extra = np.zeros_like(scores)
    lift = np.zeros_like(scores)
    brows = np.repeat(np.arange(len(g)), basket.shape[1])
    bvalid = basket.ravel() >= 0
    partners, weights, lifts = p.partner_table()
    width = partners.shape[1]
    if width:
        b_items = basket.ravel()[bvalid]
        prow = np.repeat(brows[bvalid], width)
        pcol, pw, pl = partners[b_items].ravel(), weights[b_items].ravel(), lifts[b_items].ravel()
        keep = pcol >= 0
        np.add.at(extra, (prow[keep], pcol[keep]), pw[keep])
        np.add.at(lift, (prow[keep], pcol[keep]), pl[keep])
    hrow, hcol = rows[valid.ravel()], history[valid]
    np.add.at(extra, (hrow, hcol), hw[valid] * p.repeat[hcol] * (lift[hrow, hcol] + f32(1)))
    r, i = np.nonzero(extra)
    s = scores[r, i]
    scores[r, i] = s + np.log1p(extra[r, i] * np.exp(-np.clip(s, -G_CLIP, G_CLIP)))
    scores[brows[bvalid], basket.ravel()[bvalid]] = -np.inf
    return scores


def reference_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k indices (int64) and scores (float32), best first, ties by lower index."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(scores, order, axis=1)
