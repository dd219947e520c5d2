"""Held-out evaluation of a model directory against baselines (and the simulator's oracles).

Each customer's held-out basket (the last one, or with ``split="time"`` the first on or after
the cutoff; see :mod:`models.holdout`) is scored by the model and by every reference in
:mod:`models.baselines`, which see only the training baskets; for simulated data also by the
marginal and the conditional oracle (:mod:`models.oracle`). Beside the means the report has the
repeat / explore split of recall (Li et al., TOIS 2023) and, for the model against each
baseline, the paired bootstrap 95 % interval of the margin (:mod:`models.intervals`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .baselines import fit_baselines, top_k
from .data import Dataset, load_dataset
from .errors import DataError
from .history import HistoryKernel, fit_history_kernel
from .holdout import (
    Requests,
    holdout_requests,
    per_request_metrics,
    ranking_metrics,
    repeat_explore,
    split_masks,
    validation_mask,
)
from .intervals import paired_interval
from .oracle import oracle_tops
from .progress import progress
from .runtime import Recommender

__all__ = ["BASELINES", "evaluate_dataset", "evaluate_model", "format_table", "to_json"]

BASELINES = (
    "popularity",
    "personal_top_frequency",
    "item_knn",
    "tifu_knn",
    "tifu_item_knn",
    "oracle",
    "conditional_oracle",
    "posterior_oracle",
)
COMPARED = ("popularity", "personal_top_frequency", "item_knn", "tifu_knn", "tifu_item_knn")
BATCH = 512


def _model_top(rec: Recommender, req: Requests, k: int, quiet: bool) -> np.ndarray:
    tops = []
    for lo in progress(range(0, len(req), BATCH), desc="evaluate", quiet=quiet):
        rows = slice(lo, lo + BATCH)
        items, scores = rec.infer(req.baskets[rows], req.history[rows], req.history_weights[rows], req.context[rows])
        tops.append(np.where(np.isfinite(scores), items, -1)[:, :k])
    return np.concatenate(tops)


def baseline_tops(
    train: Dataset, kernel: HistoryKernel, req: Requests, k: int, quiet: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Top-k lists of every reference in :mod:`models.baselines`, tuned on ``train``'s own
    validation split; returns (tops, the tuned settings)."""
    val_mask = validation_mask(train)
    fit = train.subset(~val_mask)
    val = holdout_requests(train, val_mask, fit_history_kernel(fit)[0], seed=1)
    refs, tuning = fit_baselines(train, fit, val)
    tops: dict[str, list[np.ndarray]] = {}
    for name, score in refs.scorers(req):
        for lo in progress(range(0, len(req), BATCH), desc=name, quiet=quiet):
            rows = slice(lo, min(lo + BATCH, len(req)))
            tops.setdefault(name, []).append(top_k(score(rows), req.baskets[rows], k))
    return {name: np.concatenate(parts) for name, parts in tops.items()}, tuning


def evaluate_dataset(
    rec: Recommender | None,
    ds: Dataset,
    *,
    k: int = 10,
    oracle: Path | None = None,
    quiet: bool = True,
    baselines: bool = True,
    split: str = "last",
    cutoff: datetime | None = None,
) -> dict[str, Any]:
    """Metrics of ``rec`` (if given), the baselines and the oracles on ``ds``'s held-out baskets.

    ``oracle`` is the data directory's ``oracle.npz`` (its ``truth.json`` beside it)."""
    targets, train_mask = split_masks(ds, split, cutoff)
    train = ds.subset(train_mask)
    kernel = rec.kernel if rec is not None else fit_history_kernel(train)[0]
    req = holdout_requests(ds, targets, kernel)
    report: dict[str, Any] = {"k": k, "split": split, "requests": len(req), "results": {}}
    if cutoff is not None:
        report["cutoff"] = cutoff.isoformat()
    if len(req) == 0 or train.n_baskets == 0:
        return report
    tops: dict[str, np.ndarray] = {}
    if rec is not None:
        tops["model"] = _model_top(rec, req, k, quiet)
    if baselines:
        found, report["tuning"] = baseline_tops(train, kernel, req, k, quiet)
        tops.update(found)
    if oracle is not None:
        tops.update(oracle_tops(ds, req, Path(oracle).parent, k))
    per = {name: per_request_metrics(top, req.hidden, k) for name, top in tops.items()}
    for name, top in tops.items():
        report["results"][name] = {
            **ranking_metrics(top, req.hidden, k),
            **repeat_explore(top, req.hidden, req.seen, k),
        }
    if "model" in per:
        report["intervals"] = {
            name: {
                metric: paired_interval(per["model"][metric], per[name][metric])
                for metric in (f"recall@{k}", f"ndcg@{k}")
            }
            for name in tops
            if name != "model"
        }
    return report


def evaluate_model(
    model_dir: Path,
    data_dir: Path,
    *,
    k: int = 10,
    quiet: bool = True,
    split: str = "last",
    cutoff: datetime | None = None,
) -> dict[str, Any]:
    """Evaluate a model directory on a data directory (see :func:`evaluate_dataset`)."""
    data_dir = Path(data_dir)
    ds = load_dataset(data_dir)
    rec = Recommender.load(Path(model_dir), max_basket=512, max_history=128)
    try:
        if rec.catalog.sha256() != ds.catalog.sha256():
            raise DataError(
                data_dir / "catalog.csv", 0, "catalog differs from the model's; evaluate on the data it was trained for"
            )
        with threadpool_limits(limits=1):  # BLAS threads only oversubscribe a small box
            return evaluate_dataset(
                rec, ds, k=k, oracle=data_dir / "oracle.npz", quiet=quiet, split=split, cutoff=cutoff
            )
    finally:
        rec.close()


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report, one row per scorer, then the model's margins."""
    k = report["k"]
    cols = (
        f"recall@{k}",
        f"ndcg@{k}",
        f"hit_rate@{k}",
        f"recall_repeat@{k}",
        f"recall_explore@{k}",
        f"repeat_share@{k}",
    )
    heads = ("recall", "ndcg", "hit_rate", "rec_repeat", "rec_explore", "rep_share")
    lines = [f"{'scorer @' + str(k):<24}" + "".join(f"{c:>12}" for c in heads)]
    for name, metrics in report["results"].items():
        lines.append(f"{name:<24}" + "".join(f"{metrics.get(c, float('nan')):>12.4f}" for c in cols))
    lines.append(f"({report['requests']} held-out baskets, split: {report.get('split', 'last')})")
    if report.get("intervals"):
        lines.append("")
        lines.append(f"{'model minus':<24}{'recall@' + str(k) + ' [95% CI]':>30}{'ndcg@' + str(k) + ' [95% CI]':>30}")
        for name, iv in report["intervals"].items():
            cells = [f"{m['margin']:+.4f} [{m['low']:+.4f}, {m['high']:+.4f}]" for m in iv.values()]
            lines.append(f"{name:<24}" + "".join(f"{c:>30}" for c in cells))
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    """The report as one JSON object: ``{"k": …, "results": {scorer: metrics}, …}``."""
    return json.dumps(report, sort_keys=False)
