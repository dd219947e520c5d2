"""The uplift report's 95 % interval covers the simulator's known offer effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from .simulation import simulate_month

SEEDS = range(20)


def test_interval_covers_the_true_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = [simulate_month(seed, tmp_path) for seed in SEEDS]
    coverage = sum(r.covered for r in results) / len(results)
    with capsys.disabled():
        print(
            f"\nuplift CI coverage over {len(results)} simulated months: {coverage:.0%}"
            f" (true effects {min(r.true_effect for r in results):.3f}–"
            f"{max(r.true_effect for r in results):.3f})"
        )
    for r in results:
        assert r.estimate.treatment_units > 0 and r.estimate.holdout_units > 0
        share = r.estimate.holdout_units / (r.estimate.treatment_units + r.estimate.holdout_units)
        assert 0.22 < share < 0.38  # the campaign's 30 % holdout, on a few hundred visits
    # nominal 95 %: 16 of 20 or better fails only with probability ≈ 0.3 % for a correct interval
    assert coverage >= 0.8


@pytest.mark.slow
def test_interval_coverage_over_many_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = [simulate_month(seed, tmp_path) for seed in range(100, 200)]
    coverage = sum(r.covered for r in results) / len(results)
    with capsys.disabled():
        print(f"\nuplift CI coverage over {len(results)} simulated months: {coverage:.1%}")
    assert 0.88 <= coverage <= 0.99
