"""The two item-to-item parts of the model, from basket co-occurrence, in numpy alone.

* :func:`embeddings` — the top eigenvectors of the shrunk positive-PMI matrix (broad "goes
  with" structure, low rank): ``mean(E[basket]) @ Eᵀ`` approximates the basket's mean lift.
* :func:`complements` — per item its ``width`` strongest specific partners: the excess
  probability ``P(j | i) − P(j)`` (shrunk), i.e. how much more likely j is in a basket because
  i is. A low-rank factorisation blurs exactly these pairs; the sparse table keeps them.

Both are deterministic on any architecture up to the last bits of BLAS: fixed start vectors,
fixed iteration counts, stable sorts, eigenvector signs fixed; :func:`quantize` then rounds
every exported weight to a float16-representable value so those last bits cannot show.
"""

from __future__ import annotations

import numpy as np

from .cooccur import Sparse

__all__ = ["complements", "embeddings", "quantize"]

EMBEDDED_MAX = 4096
"""Items embedded at most (the most bought ones): a 4,096² float64 matrix is 128 MiB."""
ITERATIONS = 10


def quantize(x: np.ndarray) -> np.ndarray:
    """Round to the nearest float16-representable value, returned as float32.

    Relative precision 2⁻¹¹: far below what the scores need, far above the 1e-15 differences
    that BLAS kernels, SIMD widths or thread counts leave in float64 results."""
    return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float32)


def _ppmi(co: Sparse, counts: np.ndarray, n_baskets: int, shrink: float) -> Sparse:
    expected = counts[co.rows] * counts[co.cols] / max(n_baskets, 1)
    lift = np.log((co.vals + shrink) / (expected + shrink))
    return co.where(lift > 0, lift)


def embeddings(co: Sparse, counts: np.ndarray, n_baskets: int, dim: int, shrink: float) -> np.ndarray:
    """Eᵀ [dim, n]: top eigenvectors of the PPMI matrix scaled by √eigenvalue (≥ 0 only).

    Only the :data:`EMBEDDED_MAX` most bought items are embedded (the rest keep a zero vector:
    their co-occurrence is too thin to place them, and the complement table and the prior
    still score them), so the matrix is small enough to multiply dense. Block subspace
    iteration with 2·dim + 8 vectors from a fixed start, then Rayleigh–Ritz."""
    n = co.shape[0]
    out = np.zeros((dim, n))
    m = _ppmi(co, counts, n_baskets, shrink)
    bought = np.flatnonzero(counts > 0)
    keep = np.sort(bought[np.argsort(-counts[bought], kind="stable")[:EMBEDDED_MAX]])
    size = len(keep)
    k = max(0, min(dim, size - 2))
    if k == 0 or len(m.vals) == 0:
        return out
    local = np.full(n, -1, dtype=np.int64)
    local[keep] = np.arange(size)
    inside = (local[m.rows] >= 0) & (local[m.cols] >= 0)
    dense = np.zeros((size, size))
    dense[local[m.rows[inside]], local[m.cols[inside]]] = m.vals[inside]
    block = min(size, 2 * k + 8)
    grid = np.arange(size)[:, None] * (np.arange(block)[None, :] + 1)
    v, _ = np.linalg.qr(np.cos(grid * 0.618) + 1.5 * (np.arange(block) == 0))
    for _ in range(ITERATIONS):
        v, _ = np.linalg.qr(dense @ v)
    t = v.T @ (dense @ v)
    vals, small = np.linalg.eigh((t + t.T) / 2)
    order = np.argsort(-vals, kind="stable")[:k]
    vals, vecs = vals[order], v @ small[:, order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    out[:k, keep] = (vecs * np.sqrt(np.maximum(vals, 0.0))).T
    return out


def complements(
    co: Sparse, counts: np.ndarray, n_baskets: int, width: int, shrink: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per item the ``width`` partners j with the largest shrunk ``P(j | i) − P(j)`` > 0.

    Returns (partners [n, width] int32, −1 = none; excess [n, width] float64, 0 for none)."""
    n = co.shape[0]
    p = counts / max(n_baskets, 1)
    excess = (co.vals - counts[co.rows] * p[co.cols]) / (counts[co.rows] + shrink)
    keep = excess > 0
    rows, cols, ex = co.rows[keep], co.cols[keep], excess[keep]
    order = np.lexsort((cols, -ex, rows))
    rows, cols, ex = rows[order], cols[order], ex[order]
    start = np.r_[0, np.cumsum(np.bincount(rows, minlength=n))][rows]
    rank = np.arange(len(rows)) - start
    top = rank < width
    partners = np.full((n, width), -1, dtype=np.int32)
    values = np.zeros((n, width))
    partners[rows[top], rank[top]] = cols[top]
    values[rows[top], rank[top]] = ex[top]
    return partners, values
