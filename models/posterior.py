"""The posterior oracle: what the best estimator of a person's staples could reach.

The conditional oracle (:mod:`models.oracle`) knows each person's staples and their per-visit
probabilities — things no model can read from ~5–15 baskets. The posterior oracle knows the
rest of the simulator's world, rebuilt from ``truth.json``'s recipe (popularity, every
person's category taste and basket size, the hour / weekend / weather effects, the repurchase
cycles, complements and substitutes), and *infers* the staples: for every item, Bayes' rule on
the person's earlier baskets between

* "a staple with probability s" (s on a grid over the simulator's uniform 0.4–0.9): at a visit
  ``d`` days after the item's previous purchase it is bought with
  ``1 − (1 − g)(1 − s · (1 − exp(−(d / cycle)²))``, ``g`` that visit's background probability;
* "not a staple": bought with ``g``;

with the prior probability of being among the person's 10 staples (the simulator picks the
top 10 of popularity + taste + Gumbel noise; the inclusion probability is computed with the
threshold approximation ``Σ_i 1 − exp(−exp(μ_i − τ)) = 10``). Its predictive probability for
the held-out visit then goes through the same substitutes, complements and conditioning on the
input half-basket as the conditional oracle. It ignores offers and the few purchases that
complements add or substitutes remove in its likelihood, so it is not exactly Bayes-optimal,
but close. With the true staples and offers plugged in instead, the rebuilt world gives the
simulator's own ``oracle.npz`` probabilities (``tests/models/test_models_posterior.py``).

A model that must also learn taste, cycles and complements from the baskets cannot expect to
pass it: how far the conditional oracle is above it is the part of the gap no estimator of
staples can close.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .context import WEATHERS
from .data import EPOCH, Dataset
from .holdout import Requests
from .simulate import STAPLES_PER_CUSTOMER, START, _World

__all__ = ["GRID", "posterior_marginals", "predictive", "staple_prior"]

#: the staple-probability grid (midpoints of 10 equal steps over the simulator's 0.4–0.9)
GRID = 0.4 + 0.05 * (np.arange(10) + 0.5)
_CUSTOMER = re.compile(r"c(\d{5,})\Z")
_WEATHER_INDEX = {w: i for i, w in enumerate(WEATHERS)}


def staple_prior(keys: np.ndarray, k: int = STAPLES_PER_CUSTOMER) -> np.ndarray:
    """P(item among the top ``k`` of ``keys + Gumbel noise``), per row of ``keys`` [V, n]: the
    threshold τ with Σ_i P(keys_i + G > τ) = k (bisection), then 1 − exp(−exp(keys − τ))."""
    lo = keys.max(axis=1, keepdims=True) - 40.0
    hi = keys.max(axis=1, keepdims=True) + 40.0
    for _ in range(32):  # 80 / 2³² ≈ 2e-8
        tau = (lo + hi) / 2
        over = (-np.expm1(-np.exp(keys - tau))).sum(axis=1, keepdims=True) > k
        lo, hi = np.where(over, tau, lo), np.where(over, hi, tau)
    inclusion: np.ndarray = -np.expm1(-np.exp(keys - (lo + hi) / 2))
    return inclusion


def _world(ds: Dataset, truth: dict[str, Any]) -> tuple[_World, np.ndarray] | None:
    """The simulator's world and each dataset customer's index in it, or None when ``ds`` is
    not the simulated store of ``truth`` (:func:`models.simulate.read_truth`: no recipe,
    another catalog, other customers)."""
    recipe = [truth.get(key, -1) for key in ("seed", "customers", "skus")]  # −1: missing
    if not all(type(v) is int and v >= 0 for v in recipe):
        return None  # no recipe (or not one the simulator writes): nothing to rebuild
    seed, customers, skus = recipe
    # a recipe that cannot have made these baskets: another catalog, or far more customers
    # than ever shopped (every simulated customer visits at ≥ 0.08 a day)
    if ds.catalog.skus != [f"SKU{i:05d}" for i in range(skus)] or customers > 2 * len(ds.customer_ids) + 100:
        return None
    matches = [_CUSTOMER.match(c) for c in ds.customer_ids]
    if not all(matches):
        return None
    users = np.array([int(m.group(1)) for m in matches if m], dtype=np.int64)
    if (len(users) and users.max() >= customers) or any(c.weather not in _WEATHER_INDEX for c in ds.contexts):
        return None
    return _World.of_recipe(seed, customers, skus), users


def _visit(world: _World, ds: Dataset, user: int, baskets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background probabilities [T, n] (float64) and simulation days [T] of ``baskets``."""
    start = (START - EPOCH).total_seconds()
    days = ((ds.time[baskets] - start) // 86400).astype(np.float64)
    rows = []
    for b in baskets.tolist():
        ctx = ds.contexts[b]
        rows.append(
            world.background(np.array([user]), np.array([ctx.hour]), ctx.weekday, _WEATHER_INDEX[ctx.weather])[0]
        )
    return np.array(rows, dtype=np.float64), days


def predictive(g: np.ndarray, days: np.ndarray, bought: np.ndarray, cycle: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """P(bought at the last of ``days``) of every item, [n], from the visits before it:
    ``g`` [T + 1, n] background probabilities, ``days`` [T + 1], ``bought`` [T, n] bool,
    ``cycle`` [n] repurchase cycles, ``prior`` [n] P(staple)."""
    n = g.shape[1]
    # the day of each item's previous purchase before each visit (−1e6: none, as the
    # simulator starts its clocks)
    stamps = np.where(bought, days[:-1, None], -1e6)
    last = np.maximum.accumulate(np.vstack([np.full((1, n), -1e6), stamps]), axis=0)
    due = -np.expm1(-(((days[:, None] - last) / cycle[None, :]) ** 2))
    prior = np.clip(prior, 1e-12, 1 - 1e-12)
    g = np.clip(g, 1e-12, 1 - 1e-12)
    # log-likelihood ratio of "staple with s" over "not a staple", [len(GRID), n]: a miss
    # contributes log(1 − s·due) (the background's log(1 − g) cancels), a purchase log(p_s / g);
    # an item never bought was due at every visit, so its ratio is T·log(1 − s)
    llr = np.repeat(len(bought) * np.log1p(-GRID)[:, None], n, axis=1)
    cols = np.flatnonzero(bought.any(axis=0))
    if len(cols):
        s, d, x, b = GRID[:, None, None], due[None, :-1, cols], g[None, :-1, cols], bought[None, :, cols]
        p_s = 1 - (1 - x) * (1 - s * d)
        llr[:, cols] = np.where(b, np.log(p_s) - np.log(x), np.log1p(-s * d)).sum(axis=1)
    log_staple = np.log(prior / len(GRID))[None] + llr
    log_not = np.log1p(-prior)
    top = np.maximum(log_staple.max(axis=0), log_not)
    w_staple, w_not = np.exp(log_staple - top), np.exp(log_not - top)
    now = 1 - (1 - g[-1][None]) * (1 - GRID[:, None] * due[-1][None])
    p: np.ndarray = ((w_staple * now).sum(axis=0) + w_not * g[-1]) / (w_staple.sum(axis=0) + w_not)
    return p


def posterior_marginals(ds: Dataset, req: Requests, truth: dict[str, Any]) -> np.ndarray | None:
    """Each request's predictive probability of every item being in the held-out basket,
    [R, n] (after substitutes and complements, before conditioning on the input half), or None
    when ``ds`` is not the simulated store of ``truth`` (its ``truth.json``)."""
    found = _world(ds, truth)
    if found is None:
        return None
    world, users = found
    first = np.r_[0, np.flatnonzero(np.diff(ds.customer) != 0) + 1]
    first_of = dict(zip(ds.customer[first].tolist(), first.tolist(), strict=True))
    out = np.zeros((len(req), ds.n_items))
    for r, target in enumerate(req.basket_index.tolist()):
        person = int(ds.customer[target])
        user = int(users[person])
        past = np.arange(first_of[person], target)  # baskets are sorted by (customer, time)
        g, days = _visit(world, ds, user, np.r_[past, target])
        bought = np.zeros((len(past), ds.n_items), dtype=bool)
        for t, b in enumerate(past.tolist()):
            bought[t, ds.basket(b)] = True
        prior = staple_prior((world.pop + world.taste[user][world.cat])[None])[0]
        out[r] = predictive(g, days, bought, world.cycle, prior)
    marginals: np.ndarray = world.marginals(out)
    return marginals
