"""Paired bootstrap intervals of a margin between two scorers on the same held-out requests."""

from __future__ import annotations

import numpy as np

__all__ = ["BOOTSTRAP_ROUNDS", "BOOTSTRAP_SEED", "paired_interval"]

BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 20200725  # fixed: the same report for the same data, run after run


def paired_interval(
    ours: np.ndarray,
    theirs: np.ndarray,
    *,
    level: float = 0.95,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float]:
    """Mean of ``ours − theirs`` over requests and its percentile bootstrap interval.

    Requests are resampled with replacement, the same resample for both scorers (paired), so
    the interval reflects how much the margin depends on which baskets were held out.
    """
    diff = np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)
    if len(diff) == 0:
        return {"margin": 0.0, "low": 0.0, "high": 0.0}
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for lo in range(0, rounds, 100):
        picks = rng.integers(0, len(diff), size=(min(100, rounds - lo), len(diff)))
        means[lo : lo + len(picks)] = diff[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"margin": round(float(diff.mean()), 6), "low": round(float(low), 6), "high": round(float(high), 6)}
