"""The statistics of test-and-learn, pure (no I/O, no clock): used by the trigger dispatcher, the
trigger report and the campaign uplift report of decisioning (CUPED), unit-tested in
``tests/edge/test_stats.py``.

* :func:`thompson_choice` — variants share the non-holdout traffic by Thompson sampling on
  conversion (Beta(1 + conversions, 1 + misses) per variant);
* :func:`confidence_sequence` — uplift of a variant over the holdout with an *always-valid*
  interval: the normal-mixture mSPRT (Robbins 1970; Johari, Pekelis & Walsh 2017, "Always valid
  inference"), so the report may be read after every firing without inflating false positives;
* :func:`cuped` — CUPED variance reduction (Deng, Xu, Kohavi & Walker 2013) with a covariate
  measured before the firing (the person's pre-period spend): ``Y − θ (X − mean X)``, θ =
  cov(X, Y) / var(X), which shrinks the variance by the factor ``1 − ρ²``;
* :func:`prob_best` — posterior probability each variant has the highest conversion rate;
* :func:`verdict` — keep learning / promote / retire.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "Sample",
    "confidence_sequence",
    "cuped",
    "predicted_shrink",
    "prob_best",
    "thompson_choice",
    "verdict",
]

#: Mixing standard deviation of the mSPRT prior on the effect (conversion-rate points). The
#: interval is valid for any τ; τ only sets where it is tightest (effects around ±τ).
DEFAULT_TAU = 0.05
#: Below this many units in an arm no interval is given (the plug-in variance is not yet usable).
MIN_UNITS = 20


@dataclass(frozen=True)
class Sample:
    """One arm's outcomes as sufficient statistics: units, mean, sample variance."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        n = len(values)
        if n == 0:
            return cls(0, 0.0, 0.0)
        arr = np.asarray(values, dtype=float)
        return cls(n, float(arr.mean()), float(arr.var(ddof=1)) if n > 1 else 0.0)

    @classmethod
    def binary(cls, n: int, successes: int) -> Sample:
        """A conversion arm; the variance is regularised (Agresti–Coull-like) so that an arm
        with 0 or n conversions does not claim certainty."""
        p = (successes + 1) / (n + 2)
        return cls(n, successes / n if n else 0.0, p * (1 - p))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_json(self) -> dict[str, float | None]:
        def num(x: float) -> float | None:
            return None if math.isinf(x) or math.isnan(x) else round(x, 6)

        return {"estimate": num(self.estimate), "low": num(self.low), "high": num(self.high)}


def confidence_sequence(
    treatment: Sample, control: Sample, *, alpha: float = 0.05, tau: float = DEFAULT_TAU
) -> Interval:
    """An always-valid (1 − α) interval for mean(treatment) − mean(control).

    With V the variance of the difference of means, the normal-mixture likelihood ratio against
    the effect Δ₀ is Λ = sqrt(V/(V+τ²)) · exp(τ² (Δ̂ − Δ₀)² / (2 V (V+τ²))); the set of Δ₀ with
    Λ < 1/α is Δ̂ ± sqrt(V (V+τ²)/τ² · (2 log(1/α) + log((V+τ²)/V))). Under H₀ Λ is a
    non-negative martingale, so by Ville's inequality the probability that the interval *ever*
    excludes the truth is at most α, however often it is read."""
    if not 0 < alpha < 1 or tau <= 0:
        raise ValueError("alpha must be in (0, 1) and tau > 0")
    estimate = treatment.mean - control.mean
    if min(treatment.n, control.n) < MIN_UNITS:
        return Interval(estimate, -math.inf, math.inf)
    v = max(treatment.var, 1e-9) / treatment.n + max(control.var, 1e-9) / control.n
    t2 = tau * tau
    radius = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return Interval(estimate, estimate - radius, estimate + radius)


def standard_error(treatment: Sample, control: Sample) -> float:
    """The fixed-n standard error of the difference of means."""
    return math.sqrt(treatment.var / max(treatment.n, 1) + control.var / max(control.n, 1))


def cuped(y: Sequence[float], x: Sequence[float | None]) -> tuple[list[float], float, float]:
    """CUPED-adjusted outcomes, θ and ρ (the correlation of X and Y). A unit without a covariate
    (an anonymous visit: no pre-period) gets the mean of the known ones, i.e. no adjustment."""
    if len(y) != len(x):
        raise ValueError("y and x must have the same length")
    known = [v for v in x if v is not None]
    if len(known) < 2:
        return list(map(float, y)), 0.0, 0.0
    fill = float(np.mean(known))
    xs = np.asarray([fill if v is None else float(v) for v in x], dtype=float)
    ys = np.asarray(y, dtype=float)
    vx = float(xs.var())
    if vx <= 0:
        return list(map(float, ys)), 0.0, 0.0
    cov = float(((xs - xs.mean()) * (ys - ys.mean())).mean())
    theta = cov / vx
    vy = float(ys.var())
    rho = cov / math.sqrt(vx * vy) if vy > 0 else 0.0
    return list(map(float, ys - theta * (xs - xs.mean()))), theta, rho


def predicted_shrink(rho: float) -> float:
    """The ratio of CUPED to plain standard error that the correlation predicts: sqrt(1 − ρ²)."""
    return math.sqrt(max(0.0, 1.0 - rho * rho))


def thompson_choice(arms: Mapping[str, tuple[int, int]], rng: random.Random) -> str:
    """The variant to serve: argmax of one Beta(1 + c, 1 + n − c) draw per variant, where
    ``arms[variant] = (firings, conversions)``. Ties (never in practice) go to the first."""
    if not arms:
        raise ValueError("no variants to choose from")
    best, best_draw = "", -1.0
    for name, (n, c) in arms.items():
        draw = rng.betavariate(1 + c, 1 + max(0, n - c))
        if draw > best_draw:
            best, best_draw = name, draw
    return best


def prob_best(arms: Mapping[str, tuple[int, int]], *, draws: int = 4000, seed: int = 0) -> dict[str, float]:
    """P(variant has the highest conversion rate) under the Beta posteriors (Monte Carlo with a
    fixed seed: the same counts always give the same figure)."""
    if not arms:
        return {}
    rng = np.random.default_rng(seed)
    names = list(arms)
    samples = np.stack([rng.beta(1 + c, 1 + max(0, n - c), draws) for n, c in arms.values()])
    wins = np.bincount(samples.argmax(axis=0), minlength=len(names))
    return {name: float(w) / draws for name, w in zip(names, wins, strict=True)}


def verdict(interval: Interval, p_best: float, *, promote_at: float = 0.95) -> str:
    """``promote`` when the variant is very likely the best and its uplift over the holdout is
    proven positive; ``retire`` when its uplift is proven not positive (the interval lies at or
    below zero); ``keep learning`` otherwise."""
    if interval.high <= 0:
        return "retire"
    if interval.low > 0 and p_best >= promote_at:
        return "promote"
    return "keep learning"
