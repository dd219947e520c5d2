"""The train command end to end: load data, hold out last baskets, fit, export, evaluate.

Each customer's last basket is excluded from training so that evaluation (here, recorded in
the manifest, and by ``edge model evaluate``) is on baskets the model never saw. The manifest's
``created`` is the latest training timestamp, so a rebuild from the same data is bit-identical.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .data import EPOCH, load_dataset
from .errors import DataError
from .evaluate import evaluate_dataset
from .export import write_model_dir
from .holdout import split_masks
from .progress import progress
from .runtime import Recommender
from .train import TrainConfig, train_params

__all__ = ["train_model"]


def train_model(
    data_dir: Path,
    out_dir: Path,
    *,
    config: TrainConfig | None = None,
    top_k: int = 50,
    quiet: bool = True,
    evaluate: bool = True,
    split: str = "last",
    cutoff: datetime | None = None,
) -> dict[str, Any]:
    """Train on ``data_dir`` and write a model directory to ``out_dir``; returns the manifest.

    ``split`` / ``cutoff`` choose what is held out, as in :func:`models.holdout.split_masks`."""
    cfg = config or TrainConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    steps = iter(progress(range(4), desc="train", quiet=quiet, total=4))
    next(steps)
    ds = load_dataset(data_dir)
    train = ds.subset(split_masks(ds, split, cutoff)[1])
    if train.n_baskets == 0:
        what = "the last basket of each customer is" if split == "last" else f"every basket from {cutoff} on is"
        raise DataError(
            data_dir / "transactions.csv", 0, f"no customer has two baskets: nothing to train on once {what} held out"
        )
    next(steps)
    with threadpool_limits(limits=1):  # one BLAS thread: one summation order, on every machine
        params, kernel, info = train_params(train, cfg)
    created = (EPOCH + timedelta(seconds=int(train.time.max()))).isoformat()
    training = {
        "baskets": train.n_baskets,
        "lines": int(len(train.items)),
        "customers": int(len(np.unique(train.customer))),
        "items_seen": int(len(np.unique(train.items))),
        "first_basket": (EPOCH + timedelta(seconds=int(train.time.min()))).isoformat(),
        "last_basket": created,
        "held_out": (
            "each customer's last basket"
            if split == "last"
            else f"each customer's first basket on or after {cutoff}; later ones unused"
        ),
        "skipped_lines": ds.skipped,
        "config": {k: v for k, v in vars(cfg).items()},
        **info,
    }
    truth = data_dir / "truth.json"
    if truth.exists():
        recipe = json.loads(truth.read_text(encoding="utf-8"))
        training["simulation"] = {k: recipe.get(k) for k in ("seed", "customers", "days", "skus")}
    next(steps)
    manifest = write_model_dir(out_dir, params, ds.catalog, kernel, created=created, top_k=top_k, training=training)
    if evaluate:
        rec = Recommender.load(out_dir, max_basket=512)
        try:
            with threadpool_limits(limits=1):
                report = evaluate_dataset(rec, ds, oracle=data_dir / "oracle.npz", split=split, cutoff=cutoff)
        finally:
            rec.close()
        manifest["metrics"] = {"k": report["k"], "held_out_baskets": report["requests"], **report["results"]}
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        (out_dir / "manifest.json").write_text(text)
    for _ in steps:
        pass
    return manifest
