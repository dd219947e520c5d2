"""edge.stats: the pure statistics, against simulation with known truth."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from edge import stats
from edge.stats import Interval, Sample, confidence_sequence, cuped, prob_best, thompson_choice


def test_aa_false_positive_rate_read_continuously_is_at_most_5_percent():
    """200 runs of two identical variants (no effect) against a 15 % holdout, variants sharing
    traffic by Thompson sampling; the interval is read after *every* firing, and a run is a
    false positive if any variant's interval ever excludes zero."""
    runs, firings, rate = 200, 1500, 0.12
    false_positives = 0
    for run in range(runs):
        rng = random.Random(run)
        counts = {"a": [0, 0], "b": [0, 0]}
        hold = [0, 0]
        hit = False
        for _ in range(firings):
            if rng.random() < 0.15:
                arm = hold
            else:
                arm = counts[thompson_choice({k: (v[0], v[1]) for k, v in counts.items()}, rng)]
            arm[0] += 1
            arm[1] += rng.random() < rate
            control = Sample.binary(*hold)
            for n, c in counts.values():
                if confidence_sequence(Sample.binary(n, c), control, alpha=0.05 / 2).excludes_zero:
                    hit = True
            if hit:
                break
        false_positives += hit
    assert false_positives / runs <= 0.05, false_positives


def test_interval_excludes_zero_eventually_when_there_is_an_effect():
    rng = np.random.default_rng(3)
    t = rng.random(4000) < 0.20
    c = rng.random(4000) < 0.10
    iv = confidence_sequence(Sample.binary(len(t), int(t.sum())), Sample.binary(len(c), int(c.sum())))
    assert iv.low > 0 and iv.low < 0.10 < iv.high


def test_interval_is_infinite_until_arms_have_units_and_shrinks_with_n():
    small = confidence_sequence(Sample.binary(5, 1), Sample.binary(5, 1))
    assert math.isinf(small.low) and small.as_json()["low"] is None
    widths = [confidence_sequence(Sample.binary(n, n // 10), Sample.binary(n, n // 10)) for n in (100, 1000, 10000)]
    assert widths[0].high - widths[0].low > widths[1].high - widths[1].low > widths[2].high - widths[2].low


def test_cuped_shrinks_the_interval_as_the_correlation_predicts():
    """Pre-period spend X drives conversion Y. Across 300 simulated experiments the spread of the
    CUPED estimate over the plain one matches sqrt(1 − ρ²), and so does each run's standard
    error and (closely) the always-valid interval's width."""
    plain, adjusted, ratios_se, ratios_cs, rhos = [], [], [], [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        n = 2000
        x = rng.gamma(2.0, 20.0, n)  # spend over the pre-period
        treat = rng.random(n) < 0.5
        p = 1 / (1 + np.exp(-(-4.0 + 0.08 * x + 0.4 * treat)))
        y = (rng.random(n) < p).astype(float)
        ya, theta, rho = cuped(list(y), list(x))
        ya = np.asarray(ya)
        rhos.append(rho)
        plain.append(y[treat].mean() - y[~treat].mean())
        adjusted.append(ya[treat].mean() - ya[~treat].mean())
        st, sc = Sample.of(list(y[treat])), Sample.of(list(y[~treat]))
        at, ac = Sample.of(list(ya[treat])), Sample.of(list(ya[~treat]))
        ratios_se.append(stats.standard_error(at, ac) / stats.standard_error(st, sc))
        a, b = confidence_sequence(at, ac), confidence_sequence(st, sc)
        ratios_cs.append((a.high - a.low) / (b.high - b.low))
    predicted = stats.predicted_shrink(float(np.mean(rhos)))
    assert predicted < 0.9  # the covariate matters in this simulation
    assert np.std(adjusted) / np.std(plain) == pytest.approx(predicted, rel=0.08)
    assert np.mean(ratios_se) == pytest.approx(predicted, rel=0.02)
    assert np.mean(ratios_cs) == pytest.approx(predicted, rel=0.10)
    assert np.mean(ratios_cs) < 1


def test_cuped_without_covariates_changes_nothing():
    y = [1.0, 0.0, 1.0]
    assert cuped(y, [None, None, None]) == (y, 0.0, 0.0)
    adjusted, theta, rho = cuped([1.0, 0.0, 1.0, 0.0], [None, 5.0, None, 1.0])
    assert len(adjusted) == 4 and adjusted[0] == 1.0


def test_thompson_choice_prefers_the_better_arm_and_is_reproducible():
    arms = {"a": (500, 50), "b": (500, 100)}
    picks = [thompson_choice(arms, random.Random(i)) for i in range(500)]
    assert picks.count("b") > 480
    assert thompson_choice(arms, random.Random(7)) == thompson_choice(arms, random.Random(7))
    with pytest.raises(ValueError):
        thompson_choice({}, random.Random(0))


def test_prob_best_sums_to_one_and_is_deterministic():
    p = prob_best({"a": (100, 10), "b": (100, 30), "c": (10, 1)})
    assert sum(p.values()) == pytest.approx(1.0)
    assert p["b"] > 0.8 > p["a"] and p == prob_best({"a": (100, 10), "b": (100, 30), "c": (10, 1)})


def test_verdicts():
    assert stats.verdict(Interval(0.1, 0.05, 0.15), 0.99) == "promote"
    assert stats.verdict(Interval(0.1, 0.05, 0.15), 0.6) == "keep learning"
    assert stats.verdict(Interval(-0.1, -0.15, -0.01), 0.0) == "retire"
    assert stats.verdict(Interval(0.0, -0.1, 0.1), 0.5) == "keep learning"
