"""Item co-occurrence counts and the little sparse algebra training and evaluation need, in numpy.

No scipy: the store install (``pip install .``) must be able to train and evaluate, and every
result here is exact integer counting or a fixed-order float64 sum, so it is the same on every
architecture and BLAS.

A sparse matrix is a :class:`Sparse` — COO triplets sorted by (row, col), i.e. CSR without the
pointer array until :meth:`Sparse.indptr` asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Dataset

__all__ = ["Sparse", "cooccurrence", "item_counts", "rows_sum"]

PAIR_CHUNK = 1 << 22
"""Ordered pairs generated at a time (bounds memory on stores with large baskets)."""


@dataclass(frozen=True)
class Sparse:
    """A [n_rows, n_cols] sparse matrix as sorted COO triplets (no explicit zeros)."""

    rows: np.ndarray  # int64
    cols: np.ndarray  # int64
    vals: np.ndarray  # float64
    shape: tuple[int, int]

    def indptr(self) -> np.ndarray:
        starts: np.ndarray = np.r_[0, np.cumsum(np.bincount(self.rows, minlength=self.shape[0]))].astype(np.int64)
        return starts

    def where(self, keep: np.ndarray | slice, vals: np.ndarray | None = None) -> Sparse:
        """The entries where ``keep``, with ``vals`` (same length as the entries) if given."""
        v = self.vals if vals is None else vals
        return Sparse(self.rows[keep], self.cols[keep], np.asarray(v)[keep], self.shape)


def item_counts(ds: Dataset) -> np.ndarray:
    """Baskets holding each item, float64 [n]."""
    return np.bincount(ds.items, minlength=ds.n_items).astype(np.float64)


def _pairs(indptr: np.ndarray, items: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    """All ordered pairs (i, j), i ≠ j, of items sharing a basket, for baskets lo..hi-1."""
    start, stop = indptr[lo], indptr[hi]
    sizes = np.diff(indptr[lo : hi + 1])
    line_size = np.repeat(sizes, sizes)
    line_start = np.repeat(indptr[lo:hi] - start, sizes)
    left = np.repeat(items[start:stop], line_size)
    first = np.repeat(line_start, line_size)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(line_size) - line_size, line_size)
    right = items[start:stop][first + offset]
    keep = left != right
    return left[keep].astype(np.int64), right[keep].astype(np.int64)


def cooccurrence(ds: Dataset) -> Sparse:
    """Baskets holding both i and j, for i ≠ j: a symmetric sparse count matrix."""
    n = ds.n_items
    sizes = np.diff(ds.indptr)
    squares = np.cumsum(sizes.astype(np.int64) ** 2)
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    lo = 0
    while lo < ds.n_baskets:
        hi = int(np.searchsorted(squares, (squares[lo - 1] if lo else 0) + PAIR_CHUNK, "right"))
        hi = min(max(hi, lo + 1), ds.n_baskets)
        left, right = _pairs(ds.indptr, ds.items, lo, hi)
        key, count = np.unique(left * n + right, return_counts=True)
        keys.append(key)
        counts.append(count)
        lo = hi
    if not keys:
        empty = np.zeros(0, np.int64)
        return Sparse(empty, empty, np.zeros(0), (n, n))
    key = np.concatenate(keys)
    count = np.concatenate(counts).astype(np.float64)
    order = np.argsort(key, kind="stable")
    key, count = key[order], count[order]
    first = np.r_[True, key[1:] != key[:-1]]
    starts = np.flatnonzero(first)
    total = np.add.reduceat(count, starts) if len(starts) else count
    key = key[first]
    return Sparse(key // n, key % n, total, (n, n))


def rows_sum(m: Sparse, picks: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Dense [R, n_cols]: row r is Σ_k weights[r, k] · m[picks[r, k]] (picks −1 = none)."""
    r_count, width = picks.shape
    indptr = m.indptr()
    flat = picks.ravel()
    w = np.ones(flat.shape) if weights is None else np.asarray(weights, np.float64).ravel()
    valid = flat >= 0
    req = np.repeat(np.arange(r_count), width)[valid]
    item, w = flat[valid], w[valid]
    lengths = indptr[item + 1] - indptr[item]
    pos = np.repeat(indptr[item] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    target = np.repeat(req, lengths) * m.shape[1] + m.cols[pos]
    out = np.bincount(target, np.repeat(w, lengths) * m.vals[pos], r_count * m.shape[1])
    return out.reshape(r_count, m.shape[1])
