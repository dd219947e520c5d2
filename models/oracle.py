"""The simulator's truth as upper references: the marginal, the conditional and the posterior oracle.

``oracle`` ranks by the true marginal probability of each item being in the held-out basket
(``oracle.npz``, written by :mod:`models.simulate`); it ignores the input half-basket.
``conditional_oracle`` also knows the generating process in ``truth.json`` (complement pairs
with their add probability q, substitute pairs) and conditions on the input half-basket S:

* an item whose complement source s is in S: miss = (1 − m_d)·(1 − q) / (1 − m_s·q);
* a complement source s whose target d is in S: Bayes' rule with P(d | s) and P(d | not s);
* an item whose substitute is in S: only its complement-added part remains.

Items outside the 256 listed per basket take the 256th probability. Exact up to treating the
sources of one item as independent, which is how the marginals are computed too.

``posterior_oracle`` (:mod:`models.posterior`) is the conditional oracle without the person's
staples: it infers them from the person's earlier baskets, everything else about the world
known — the ceiling for any estimator of staples.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset
from .errors import DataError
from .holdout import Requests
from .posterior import posterior_marginals
from .simulate import read_truth

__all__ = ["oracle_tops"]


def _marginals(ds: Dataset, req: Requests, path: Path) -> np.ndarray | None:
    try:
        with np.load(path) as data:
            order_ids, items, probs = data["order_ids"], data["items"], data["probabilities"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(path, 0, f"unreadable oracle: {exc}") from None
    position = {str(o): i for i, o in enumerate(order_ids)}
    out = np.zeros((len(req), ds.n_items))
    for r, b in enumerate(req.basket_index):
        row = position.get(ds.order_ids[b])
        if row is None:
            return None
        out[r] = probs[row][-1]
        out[r, items[row]] = probs[row]
    return out


#: item -> [(other item, complement strength q)], by source or by destination
_Edges = dict[int, list[tuple[int, float]]]


def _truth(ds: Dataset, truth: dict[str, Any], path: Path) -> tuple[_Edges, _Edges, dict[int, int]]:
    try:
        comps, subs = truth["complements"], truth["substitute_pairs"]
    except KeyError as exc:
        raise DataError(path, 0, f"unreadable truth: no {exc}") from None
    index = ds.catalog.index
    by_src: _Edges = defaultdict(list)
    by_dst: _Edges = defaultdict(list)
    partner: dict[int, int] = {}
    for src, dst, q in comps:
        s, d = index(src), index(dst)
        if s is not None and d is not None:
            by_src[s].append((d, float(q)))
            by_dst[d].append((s, float(q)))
    for a_sku, b_sku in subs:
        a, b = index(a_sku), index(b_sku)
        if a is not None and b is not None:
            partner[a], partner[b] = b, a
    return by_src, by_dst, partner


def _condition(m: np.ndarray, basket: set[int], by_src: _Edges, by_dst: _Edges, partner: dict[int, int]) -> np.ndarray:
    cond = m.copy()
    for d in basket:
        for s, q in by_dst.get(d, ()):
            if s in basket:
                continue
            miss = (1 - m[d]) / max(1 - m[s] * q, 1e-12)
            given_s, given_not = 1 - miss * (1 - q), max(1 - miss, 1e-9)
            p = cond[s]
            cond[s] = p * given_s / max(p * given_s + (1 - p) * given_not, 1e-12)
    for s in basket:
        for d, q in by_src.get(s, ()):
            if d not in basket:
                cond[d] = 1 - (1 - cond[d]) * (1 - q) / max(1 - m[s] * q, 1e-12)
    for a in basket:
        b = partner.get(a)
        if b is None or b in basket:
            continue
        miss = 1.0
        for s, q in by_dst.get(b, ()):
            miss *= 1 - (1.0 if s in basket else cond[s]) * q
        cond[b] = 1 - miss
    return cond


def oracle_tops(ds: Dataset, req: Requests, data_dir: Path, k: int) -> dict[str, np.ndarray]:
    """Top-k of ``oracle``, ``conditional_oracle`` and ``posterior_oracle``
    (:mod:`models.posterior`), each only if its files are there."""
    from .baselines import top_k

    m = _marginals(ds, req, data_dir / "oracle.npz")
    if m is None:
        return {}
    tops = {"oracle": top_k(m, req.baskets, k)}
    truth = read_truth(data_dir / "truth.json")
    if truth is not None:
        edges = _truth(ds, truth, data_dir / "truth.json")
        inputs = [set(req.baskets[r][req.baskets[r] >= 0].tolist()) for r in range(len(req))]
        cond = np.array([_condition(m[r], inputs[r], *edges) for r in range(len(req))])
        tops["conditional_oracle"] = top_k(cond, req.baskets, k)
        post = posterior_marginals(ds, req, truth)
        if post is not None:
            cond = np.array([_condition(post[r], inputs[r], *edges) for r in range(len(req))])
            tops["posterior_oracle"] = top_k(cond, req.baskets, k)
    return tops
