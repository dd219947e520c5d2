"""The posterior oracle's parts against what they stand for: the staple prior against Gumbel
top-k draws, the rebuilt world (with the true staples and the offers plugged in) against the
simulator's own ``oracle.npz``, and the Bayes predictive against outcomes drawn from its own generative model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.data import EPOCH, Dataset, load_dataset
from models.errors import DataError
from models.history import fit_history_kernel
from models.holdout import Requests, holdout_requests, split_masks
from models.posterior import _visit, _world, posterior_marginals, predictive, staple_prior
from models.simulate import STAPLES_PER_CUSTOMER, read_truth, simulate_store

SEED = 20261204


def test_staple_prior_matches_gumbel_top_k_draws() -> None:
    rng = np.random.default_rng(SEED)
    keys = rng.normal(0, 1.5, (2, 300)) - np.log1p(np.arange(300))[None]
    prior = staple_prior(keys)
    np.testing.assert_allclose(prior.sum(axis=1), STAPLES_PER_CUSTOMER, rtol=1e-6)
    draws = 20_000
    for row in range(2):
        noisy = keys[row][None] + rng.gumbel(size=(draws, keys.shape[1]))
        top = np.argpartition(-noisy, STAPLES_PER_CUSTOMER, axis=1)[:, :STAPLES_PER_CUSTOMER]
        freq = np.bincount(top.ravel(), minlength=keys.shape[1]) / draws
        assert np.abs(freq - prior[row]).max() < 0.03, np.abs(freq - prior[row]).max()


def simulated(path: Path, seed: int, customers: int, days: int, skus: int) -> tuple[Dataset, Requests, dict[str, Any]]:
    """A simulated store's dataset, its held-out requests (as evaluate builds them) and truth."""
    simulate_store(path, seed=seed, customers=customers, days=days, skus=skus)
    ds = load_dataset(path)
    targets, train = split_masks(ds, "last", None)
    truth = read_truth(path / "truth.json")
    assert truth is not None
    return ds, holdout_requests(ds, targets, fit_history_kernel(ds.subset(train))[0]), truth


def test_the_rebuilt_world_with_the_true_staples_is_the_simulators_oracle(tmp_path: Path) -> None:
    ds, req, truth = simulated(tmp_path, 5, 300, 30, 150)
    found = _world(ds, truth)
    assert found is not None
    world, users = found
    first = {int(c): int(np.flatnonzero(ds.customer == c)[0]) for c in np.unique(ds.customer)}
    rows = [line.split(",") for line in (tmp_path / "offers.csv").read_text().splitlines()[1:]]
    offers = {(r[1], r[2]): (r[3], r[4]) for r in rows}

    def stamp(b: int) -> str:
        return (EPOCH + timedelta(seconds=int(ds.time[b]))).isoformat()

    ours = np.zeros((len(req), ds.n_items))
    for r, target in enumerate(req.basket_index.tolist()):
        person = int(ds.customer[target])
        user = int(users[person])
        past = np.arange(first[person], target)
        g, days = _visit(world, ds, user, np.r_[past, target])
        p = g[-1].copy()
        for staple, chance in zip(world.staples[user], world.staple_p[user], strict=True):
            bought_on = [days[t] for t, b in enumerate(past.tolist()) if staple in ds.basket(b)]
            since = days[-1] - (bought_on[-1] if bought_on else -1e6)
            p[staple] = 1 - (1 - p[staple]) * (1 - chance * -np.expm1(-((since / world.cycle[staple]) ** 2)))
        # the visit's offer, as the simulator applies it (treatment arm: + the item's uplift)
        sku, arm = offers[(ds.customer_ids[person], stamp(target))]
        if arm == "treatment":
            item = ds.catalog.index(sku)
            p[item] = min(1.0, p[item] + world.uplift[item])
        ours[r] = p
    ours = world.marginals(ours)
    with np.load(tmp_path / "oracle.npz") as oracle:
        row_of = {str(o): i for i, o in enumerate(oracle["order_ids"])}
        items, probs = oracle["items"], oracle["probabilities"]
    for r, target in enumerate(req.basket_index.tolist()):
        row = row_of[ds.order_ids[target]]
        np.testing.assert_allclose(ours[r, items[row]], probs[row], atol=2e-6)


def test_the_predictive_is_calibrated_on_draws_from_its_own_model() -> None:
    """40,000 independent items of one shopper's 8 past visits and the next: staple with the
    prior, staple probability uniform on 0.4–0.9, purchases drawn visit by visit with the
    simulator's due curve; the predicted probability of the next visit must match how often
    it is bought, in every decile, and beat the background probability alone in log-loss."""
    rng = np.random.default_rng(SEED + 1)
    n, visits = 40_000, 9
    days = np.sort(rng.choice(60, size=visits, replace=False)).astype(np.float64)
    g = rng.uniform(0.005, 0.3, (visits, n))
    cycle = rng.uniform(3, 30, n)
    prior = rng.uniform(0.01, 0.6, n)
    staple = rng.random(n) < prior
    chance = rng.uniform(0.4, 0.9, n)
    bought = np.zeros((visits, n), dtype=bool)
    last = np.full(n, -1e6)
    for t in range(visits):
        due = -np.expm1(-(((days[t] - last) / cycle) ** 2))
        p = np.where(staple, 1 - (1 - g[t]) * (1 - chance * due), g[t])
        bought[t] = rng.random(n) < p
        last = np.where(bought[t], days[t], last)
    predicted = predictive(g, days, bought[:-1], cycle, prior)
    outcome = bought[-1]
    assert abs(predicted.mean() - outcome.mean()) < 3 * np.sqrt(outcome.mean() / n)
    # calibrated in every decile of the prediction and of the prior (a prior that the
    # predictive read wrongly, e.g. as its mean, would pass the first and fail the second)
    for by in (predicted, prior):
        edges = np.quantile(by, np.linspace(0, 1, 11))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            cell = (by >= lo) & (by <= hi)
            assert abs(predicted[cell].mean() - outcome[cell].mean()) < 0.025, (lo, hi)

    def log_loss(p: np.ndarray) -> float:
        return float(-np.mean(np.where(outcome, np.log(p), np.log1p(-p))))

    assert log_loss(predicted) < log_loss(g[-1]) - 0.05


def test_another_store_has_no_posterior_oracle(tmp_path: Path) -> None:
    """A catalog or customers the recipe did not make: no reference rather than a wrong one."""
    ds, req, recipe = simulated(tmp_path, 6, 60, 10, 40)
    assert posterior_marginals(ds, req, recipe) is not None
    assert read_truth(tmp_path / "missing.json") is None  # no truth: no oracle of any kind
    truth = (tmp_path / "truth.json").read_text()
    for edited in (
        truth.replace('"skus": 40', '"skus": 41'),  # another catalog
        truth.replace('"customers": 60', '"customers": 1000000000'),  # not these shoppers
        truth.replace('"seed": 6', '"seed": "6"'),  # not a recipe the simulator writes
        truth.replace('"seed": 6', '"planted": 6'),  # no recipe at all
    ):
        (tmp_path / "truth.json").write_text(edited)
        edited_truth = read_truth(tmp_path / "truth.json")
        assert edited_truth is not None and posterior_marginals(ds, req, edited_truth) is None
    for broken in ("{", "[1, 2]"):
        (tmp_path / "truth.json").write_text(broken)
        with pytest.raises(DataError, match="unreadable truth"):
            read_truth(tmp_path / "truth.json")
