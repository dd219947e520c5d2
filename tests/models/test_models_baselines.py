"""The references' building blocks against direct computations: co-occurrence counts, TIFU-KNN
vectors (the paper's definition written out), the conditional oracle (against draws from the
simulator's own generating code), paired bootstrap intervals and the repeat/explore split."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import permutations

import numpy as np
import pytest

from models.baselines import tifu_vectors
from models.catalog import Catalog, CatalogItem
from models.cooccur import cooccurrence, rows_sum
from models.data import Dataset, build_dataset
from models.holdout import repeat_explore
from models.intervals import paired_interval
from models.oracle import _condition
from models.simulate import _World

SEED = 20261201


def random_dataset(rng: np.random.Generator, n: int = 12, baskets: int = 60) -> Dataset:
    catalog = Catalog([CatalogItem(f"I{i}", f"item {i}", "c", 1.0, 0.1) for i in range(n)])
    start = datetime(2026, 1, 5)
    lines = []
    for b in range(baskets):
        items = rng.choice(n, size=int(rng.integers(1, 7)), replace=False)
        when = start + timedelta(days=int(b // 4), hours=int(rng.integers(8, 20)))
        lines += [(f"o{b}", f"c{b % 4}", int(i), when, "unknown", None, "pos") for i in items]
    return build_dataset(catalog, lines, {})


def test_cooccurrence_and_rows_sum_equal_brute_force() -> None:
    rng = np.random.default_rng(SEED)
    print("seed", SEED)
    ds = random_dataset(rng)
    expected = np.zeros((ds.n_items, ds.n_items))
    for b in range(ds.n_baskets):
        for i, j in permutations(ds.basket(b).tolist(), 2):
            expected[i, j] += 1
    co = cooccurrence(ds)
    dense = np.zeros_like(expected)
    dense[co.rows, co.cols] = co.vals
    np.testing.assert_array_equal(dense, expected)
    assert (np.diff(co.rows * ds.n_items + co.cols) > 0).all()  # sorted, no duplicates
    picks = np.array([[0, 3, -1], [5, 5, 2], [-1, -1, -1]])
    weights = rng.uniform(0, 2, picks.shape)
    want = np.stack(
        [
            sum((weights[r, k] * expected[p] for k, p in enumerate(row) if p >= 0), np.zeros(ds.n_items))
            for r, row in enumerate(picks)
        ]
    )
    np.testing.assert_allclose(rows_sum(co, picks, weights), want)


def test_tifu_vectors_follow_the_papers_definition() -> None:
    """Hu et al. 2020, eq. 1–3: groups of m baskets (the oldest group holds the rest), within a
    group Σ r_b^(t−j) x_j / t, across groups Σ r_g^(G−i) v_i / G."""
    ds = random_dataset(np.random.default_rng(SEED + 1))
    m, rb, rg = 3, 0.9, 0.7
    got = tifu_vectors(ds, m, rb, rg)
    for c in range(len(ds.customer_ids)):
        baskets = [b for b in range(ds.n_baskets) if ds.customer[b] == c]
        rest = len(baskets) % m
        groups = ([baskets[:rest]] if rest else []) + [baskets[k : k + m] for k in range(rest, len(baskets), m)]
        want = np.zeros(ds.n_items)
        for gi, group in enumerate(groups, start=1):
            v = np.zeros(ds.n_items)
            for j, b in enumerate(group, start=1):
                v[ds.basket(b)] += rb ** (len(group) - j)
            want += rg ** (len(groups) - gi) * v / len(group)
        np.testing.assert_allclose(got[c], want / len(groups), rtol=1e-12)


def test_conditional_oracle_matches_the_simulators_own_draws() -> None:
    """Items: 0 → 1 complement (q 0.5), 2/3 substitutes, 4 unrelated. Draw many baskets with
    the simulator's ``_World.draw`` and compare P(item | input item present) with the oracle."""
    world = _World.__new__(_World)
    world.sub_a, world.sub_b = np.array([2]), np.array([3])
    world.comp_src, world.comp_dst, world.comp_q = np.array([0]), np.array([1]), np.array([0.5])
    p = np.array([[0.3, 0.1, 0.4, 0.35, 0.2]], dtype=np.float32)
    rng = np.random.default_rng(SEED)
    draws = np.concatenate([world.draw(rng, np.repeat(p, 50_000, axis=0)) for _ in range(4)])
    m = world.marginals(p)[0]
    np.testing.assert_allclose(draws.mean(axis=0), m, atol=0.005)
    by_src, by_dst, partner = {0: [(1, 0.5)]}, {1: [(0, 0.5)]}, {2: 3, 3: 2}
    for present in (0, 1, 2):
        cond = _condition(m, {present}, by_src, by_dst, partner)
        seen = draws[draws[:, present]]
        for item in range(5):
            if item != present:
                assert cond[item] == pytest.approx(seen[:, item].mean(), abs=0.01), (present, item)


def test_paired_interval() -> None:
    rng = np.random.default_rng(SEED)
    theirs = rng.random(500)
    shifted = paired_interval(theirs + 0.25, theirs)
    assert shifted["margin"] == shifted["low"] == shifted["high"] == pytest.approx(0.25)
    ours = theirs + rng.normal(0.02, 0.1, 500)
    iv = paired_interval(ours, theirs)
    half = 1.96 * 0.1 / np.sqrt(500)
    assert iv["low"] < iv["margin"] < iv["high"]
    assert iv["high"] - iv["low"] == pytest.approx(2 * half, rel=0.2)
    assert paired_interval(ours, theirs) == iv  # fixed seed: the same report every run


def test_repeat_explore_split() -> None:
    top = np.array([[1, 2, 3, 9], [5, 6, 7, 8]])
    hidden = [np.array([1, 4, 9]), np.array([8])]
    seen = [np.array([1, 2, 4]), np.array([0])]
    out = repeat_explore(top, hidden, seen, k=4)
    # request 0: repeat {1, 4} → 1 hit of 2; explore {9} → 1 of 1; request 1: explore {8} → 1 of 1
    assert out == {"recall_repeat@4": 0.5, "recall_explore@4": 1.0, "repeat_share@4": 0.25}
