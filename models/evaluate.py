"""Held-out evaluation of a model directory against baselines (and the simulator's oracle).

Each customer's last basket is held out (see :mod:`models.holdout` for the protocol); the model
and every baseline see only the baskets before it. Baselines: global popularity, the person's
own most frequent items, item-kNN on cosine co-occurrence, and — for simulated data, when
``oracle.npz`` is present — the true purchase probabilities. All exclude the input basket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .data import Dataset, load_dataset
from .errors import DataError
from .holdout import Requests, holdout_requests, ranking_metrics
from .progress import progress
from .runtime import Recommender

__all__ = ["BASELINES", "evaluate_dataset", "evaluate_model", "format_table", "to_json"]

BASELINES = ("popularity", "personal_top_frequency", "item_knn", "oracle")
BATCH = 512


def _top(scores: np.ndarray, req: Requests, rows: slice, k: int) -> np.ndarray:
    basket = req.baskets[rows]
    r_idx = np.repeat(np.arange(len(basket)), basket.shape[1])
    valid = basket.ravel() >= 0
    scores[r_idx[valid], basket.ravel()[valid]] = -np.inf
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, 1)), axis=1)
    return np.take_along_axis(part, order, 1)


def _baseline_tops(
    train: Dataset, req: Requests, k: int, quiet: bool
) -> dict[str, np.ndarray]:
    n = train.n_items
    x = sp.csr_matrix((np.ones(len(train.items)), train.items, train.indptr), (train.n_baskets, n))
    counts = np.asarray(x.sum(axis=0)).ravel()
    tie = counts / max(counts.max(), 1.0) * 1e-3
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    norm = np.sqrt(np.maximum(counts, 1.0))
    sim = sp.diags(1 / norm) @ co @ sp.diags(1 / norm)
    tops: dict[str, list[np.ndarray]] = {"popularity": [], "personal_top_frequency": [],
                                         "item_knn": []}
    for lo in progress(range(0, len(req), BATCH), desc="baselines", quiet=quiet):
        rows = slice(lo, min(lo + BATCH, len(req)))
        m = rows.stop - rows.start
        tops["popularity"].append(_top(np.tile(counts, (m, 1)), req, rows, k))
        freq = np.tile(tie, (m, 1))
        hist = req.history[rows]
        r_idx = np.repeat(np.arange(m), hist.shape[1])
        valid = hist.ravel() >= 0
        counts_h = req.history_counts[rows].ravel()[valid]
        np.add.at(freq, (r_idx[valid], hist.ravel()[valid]), counts_h)
        tops["personal_top_frequency"].append(_top(freq, req, rows, k))
        basket = req.baskets[rows]
        b_idx = np.repeat(np.arange(m), basket.shape[1])
        bvalid = basket.ravel() >= 0
        onehot = sp.csr_matrix(
            (np.ones(bvalid.sum()), (b_idx[bvalid], basket.ravel()[bvalid])), shape=(m, n)
        )
        knn = np.asarray((onehot @ sim).todense()) + tie
        tops["item_knn"].append(_top(knn, req, rows, k))
    return {name: np.concatenate(parts) for name, parts in tops.items()}


def _oracle_top(ds: Dataset, req: Requests, path: Path, k: int) -> np.ndarray | None:
    try:
        with np.load(path) as data:
            order_ids, items = data["order_ids"], data["items"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(path, 0, f"unreadable oracle: {exc}") from None
    position = {str(o): i for i, o in enumerate(order_ids)}
    rows = []
    for r, b in enumerate(req.basket_index):
        row = position.get(ds.order_ids[b])
        if row is None:
            return None
        ranked = items[row]
        rows.append(ranked[~np.isin(ranked, req.baskets[r])][:k])
    return np.array(rows)


def evaluate_dataset(
    rec: Recommender | None, ds: Dataset, *, k: int = 10, oracle: Path | None = None,
    quiet: bool = True, baselines: bool = True,
) -> dict[str, Any]:
    """Metrics of ``rec`` (if given) and of the baselines on ``ds``'s held-out last baskets."""
    last = ds.last_basket_mask()
    train = ds.subset(~last)
    kernel = rec.kernel if rec is not None else None
    if kernel is None:
        from .history import fit_history_kernel

        kernel = fit_history_kernel(train)[0]
    req = holdout_requests(ds, last, kernel)
    results: dict[str, dict[str, float]] = {}
    if len(req) == 0:
        return {"k": k, "requests": 0, "results": results}
    if rec is not None:
        tops = []
        for lo in progress(range(0, len(req), BATCH), desc="evaluate", quiet=quiet):
            rows = slice(lo, lo + BATCH)
            items, scores = rec.infer(req.baskets[rows], req.history[rows],
                                      req.history_weights[rows], req.context[rows])
            tops.append(np.where(np.isfinite(scores), items, -1)[:, :k])
        results["model"] = ranking_metrics(np.concatenate(tops), req.hidden, k)
    if baselines:
        for name, top in _baseline_tops(train, req, k, quiet).items():
            results[name] = ranking_metrics(top, req.hidden, k)
    if oracle is not None:
        top = _oracle_top(ds, req, oracle, k)
        if top is not None:
            results["oracle"] = ranking_metrics(top, req.hidden, k)
    return {"k": k, "requests": len(req), "results": results}


def evaluate_model(
    model_dir: Path, data_dir: Path, *, k: int = 10, quiet: bool = True
) -> dict[str, Any]:
    """Evaluate a model directory on a data directory (see :func:`evaluate_dataset`)."""
    data_dir = Path(data_dir)
    ds = load_dataset(data_dir)
    rec = Recommender.load(Path(model_dir), max_basket=512, max_history=128)
    try:
        if rec.catalog.sha256() != ds.catalog.sha256():
            raise DataError(data_dir / "catalog.csv", 0,
                            "catalog differs from the model's; evaluate on the data it was "
                            "trained for")
        return evaluate_dataset(rec, ds, k=k, oracle=data_dir / "oracle.npz", quiet=quiet)
    finally:
        rec.close()


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report, one row per scorer."""
    k = report["k"]
    cols = (f"recall@{k}", f"ndcg@{k}", f"hit_rate@{k}")
    lines = [f"{'scorer':<24}" + "".join(f"{c:>14}" for c in cols)]
    for name, metrics in report["results"].items():
        lines.append(f"{name:<24}" + "".join(f"{metrics[c]:>14.4f}" for c in cols))
    lines.append(f"({report['requests']} held-out baskets)")
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    """The report as one JSON object: ``{"k": …, "results": {scorer: metrics}}``."""
    return json.dumps({"k": report["k"], "results": report["results"]}, sort_keys=False)
