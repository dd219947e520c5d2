from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.decisioning.experiments import BUCKETS, arm, bucket

N = 100_000
IDS = [f"ct_{hashlib.md5(str(i).encode()).hexdigest()}" for i in range(N)]
experiment_ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
shares = st.integers(min_value=5, max_value=50).map(lambda p: p / 100)


@settings(max_examples=8, deadline=None)
@given(experiment=experiment_ids, holdout=shares)
def test_holdout_share_within_one_point(experiment: str, holdout: float) -> None:
    held = sum(arm(u, experiment, holdout) == "holdout" for u in IDS)
    assert abs(held / N - holdout) <= 0.01


@given(unit=st.text(min_size=1, max_size=40), experiment=experiment_ids, holdout=shares)
def test_sticky(unit: str, experiment: str, holdout: float) -> None:
    assert arm(unit, experiment, holdout) == arm(unit, experiment, holdout)
    assert 0 <= bucket(unit, experiment) < BUCKETS
    # a larger holdout only ever moves units into the holdout, never out
    if arm(unit, experiment, holdout) == "holdout":
        assert arm(unit, experiment, min(0.5, holdout + 0.1)) == "holdout"


@settings(max_examples=5, deadline=None)
@given(a=experiment_ids, b=experiment_ids, ha=shares, hb=shares)
def test_independent_across_experiments(a: str, b: str, ha: float, hb: float) -> None:
    if a == b:
        return
    both = sum(arm(u, a, ha) == "holdout" and arm(u, b, hb) == "holdout" for u in IDS)
    in_a = sum(arm(u, a, ha) == "holdout" for u in IDS)
    in_b = sum(arm(u, b, hb) == "holdout" for u in IDS)
    expected = in_a * in_b / N
    # 5 standard deviations of a hypergeometric-ish count: independent arms stay well inside
    sd = (expected * (1 - in_a / N) * (1 - in_b / N)) ** 0.5
    assert abs(both - expected) <= 5 * sd + 1
