"""Simulator: deterministic for a seed, exposes its truth, fast enough."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from models.catalog import load_catalog
from models.data import load_dataset
from models.simulate import offer_purchase_probability, simulate_store

FILES = ("catalog.csv", "transactions.csv", "offers.csv", "oracle.npz", "truth.json")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        simulate_store(tmp_path / name, seed=seed, customers=80, days=10, skus=60)
    for file in FILES:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert (tmp_path / "a" / "transactions.csv").read_bytes() != (tmp_path / "c" / "transactions.csv").read_bytes()


def test_outputs_are_consistent(tmp_path: Path) -> None:
    summary = simulate_store(tmp_path, seed=4, customers=150, days=20, skus=120)
    ds = load_dataset(tmp_path)
    assert ds.n_baskets == summary["orders"] and len(ds.items) == summary["lines"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    catalog = load_catalog(tmp_path / "catalog.csv")
    assert set(truth["offer_uplift"]) == set(catalog.skus)
    assert all(0.0 < u <= 0.1 for u in truth["offer_uplift"].values())
    with np.load(tmp_path / "oracle.npz") as oracle:
        probs = oracle["probabilities"]
        assert ((probs >= 0) & (probs <= 1)).all()
        assert (np.diff(probs, axis=1) <= 0).all()
        last = {ds.order_ids[b] for b in np.flatnonzero(ds.last_basket_mask())}
        assert set(oracle["order_ids"].tolist()) == last


def test_offer_purchase_probability() -> None:
    assert offer_purchase_probability(0.2, False, 0.05) == 0.2
    assert offer_purchase_probability(0.2, True, 0.05) == pytest.approx(0.25)
    assert offer_purchase_probability(0.98, True, 0.05) == 1.0
    assert offer_purchase_probability(0.01, True, -0.05) == 0.0


def test_offers_have_measurable_uplift(tmp_path: Path) -> None:
    simulate_store(tmp_path, seed=8, customers=600, days=30, skus=100)
    rows = [line.split(",") for line in (tmp_path / "offers.csv").read_text().splitlines()[1:]]
    treated = np.array([int(r[5]) for r in rows if r[4] == "treatment"])
    holdout = np.array([int(r[5]) for r in rows if r[4] == "holdout"])
    truth = json.loads((tmp_path / "truth.json").read_text())
    observed = treated.mean() - holdout.mean()
    se = np.sqrt(treated.var() / len(treated) + holdout.var() / len(holdout))
    assert abs(observed - truth["offer_uplift_mean"]) < 4 * se + 0.01


@pytest.mark.wallclock
def test_simulator_speed_2000_customers_60_days_2000_skus(tmp_path: Path) -> None:
    start = time.perf_counter()
    simulate_store(tmp_path, seed=1, customers=2000, days=60, skus=2000)
    assert time.perf_counter() - start < 30.0
