"""On simulated stores the model beats every baseline and gets near the oracle.

Three seeds and sizes, small enough for CI. The model must beat popularity, personal top
frequency and item-kNN on recall@10 and NDCG@10, and reach ≥ 80 % of the oracle's recall@10.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.build import train_model
from models.evaluate import evaluate_model
from models.simulate import simulate_store

STORES = [
    pytest.param(3, 1000, 45, 800, id="seed3-1000c-45d-800sku"),
    pytest.param(2, 600, 60, 500, id="seed2-600c-60d-500sku"),
    pytest.param(11, 800, 75, 1200, id="seed11-800c-75d-1200sku"),
]


@pytest.mark.parametrize(("seed", "customers", "days", "skus"), STORES)
def test_model_beats_baselines_and_nears_oracle(tmp_path: Path, seed: int, customers: int,
                                                days: int, skus: int) -> None:
    simulate_store(tmp_path / "data", seed=seed, customers=customers, days=days, skus=skus)
    train_model(tmp_path / "data", tmp_path / "model", evaluate=False)
    report = evaluate_model(tmp_path / "model", tmp_path / "data")
    res = report["results"]
    print(seed, {name: (m["recall@10"], m["ndcg@10"]) for name, m in res.items()})
    model = res["model"]
    for baseline in ("popularity", "personal_top_frequency", "item_knn"):
        assert model["recall@10"] > res[baseline]["recall@10"], baseline
        assert model["ndcg@10"] > res[baseline]["ndcg@10"], baseline
    assert model["recall@10"] >= 0.8 * res["oracle"]["recall@10"]
    assert report["requests"] > 0.8 * customers
