"""The exported graph computes exactly the numpy reference scoring.

Tolerance: scores agree to 1e-4 absolute + 1e-5 relative (float32, different summation order);
indices agree wherever neighbouring scores differ by more than that.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.context import CTX_DIM
from models.export import build_graph
from models.scoring import ScoringParams, reference_scores, reference_topk

ATOL, RTOL = 1e-4, 1e-5


def random_params(rng: np.random.Generator, n: int, d: int = 32, n_cat: int = 6, lift: bool = True) -> ScoringParams:
    return ScoringParams(
        emb_t=rng.normal(0, 0.5, (d, n)).astype(np.float32),
        w_ctx=rng.normal(0, 0.5, (CTX_DIM, n)).astype(np.float32),
        prior=rng.normal(-6, 1, n).astype(np.float32),
        repeat=rng.uniform(0, 10, n).astype(np.float32),
        a_basket=1.5,
        a_user=0.5,
        category=rng.integers(0, n_cat, n),
        category_share=rng.dirichlet(np.ones(n_cat)).astype(np.float32),
        a_taste=0.7,
        taste_prior=5.0,
        partners=np.where(rng.random((n, 6)) < 0.3, -1, rng.integers(0, n, (n, 6))).astype(np.int32),
        partner_weights=rng.uniform(0, 0.5, (n, 6)).astype(np.float32),
        partner_lift=rng.uniform(0, 3, (n, 6)).astype(np.float32) if lift else None,
    )


def session(p: ScoringParams, k: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(build_graph(p, k).SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(
    sess: ort.InferenceSession, b: np.ndarray, h: np.ndarray, w: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    items, scores = sess.run(None, {"basket": b, "history": h, "history_weights": w, "context": c})
    return items, scores


def assert_matches_reference(
    p: ScoringParams, sess: ort.InferenceSession, k: int, b: np.ndarray, h: np.ndarray, w: np.ndarray, c: np.ndarray
) -> None:
    items, scores = run(sess, b, h, w, c)
    ref = reference_scores(p, b, h, w, c)
    ref_items, ref_scores = reference_topk(ref, k)
    np.testing.assert_allclose(scores, ref_scores, atol=ATOL, rtol=RTOL)
    chosen = np.take_along_axis(ref, items, axis=1)
    np.testing.assert_allclose(chosen, scores, atol=ATOL, rtol=RTOL)
    gaps = np.abs(np.diff(ref_scores, axis=1))
    clear = np.ones_like(ref_items, dtype=bool)
    clear[:, 1:] &= gaps > ATOL * 10
    clear[:, :-1] &= gaps > ATOL * 10
    clear &= np.isfinite(ref_scores)
    assert (items[clear] == ref_items[clear]).all()
    for row in range(len(b)):
        finite = np.isfinite(scores[row])
        assert not set(items[row][finite]) & set(b[row][b[row] >= 0])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 6),
    wb=st.integers(1, 12),
    wh=st.integers(1, 20),
    lift=st.booleans(),
)
def test_onnx_equals_numpy_reference_on_random_inputs(seed: int, batch: int, wb: int, wh: int, lift: bool) -> None:
    """With and without the repeat lift table (the graph leaves its nodes out when a_lift = 0)."""
    rng = np.random.default_rng(seed)
    n, k = 257, 30
    p = random_params(rng, n, lift=lift)
    sess = session(p, k)
    b = np.where(rng.random((batch, wb)) < 0.3, -1, rng.integers(0, n, (batch, wb)))
    h = np.where(rng.random((batch, wh)) < 0.3, -1, rng.integers(0, n, (batch, wh)))
    w = rng.uniform(0, 2, (batch, wh)).astype(np.float32)
    c = (rng.random((batch, CTX_DIM)) < 0.15).astype(np.float32)
    assert_matches_reference(p, sess, k, b, h, w, c)


def test_empty_basket_and_history_and_small_catalogue() -> None:
    rng = np.random.default_rng(3)
    p = random_params(rng, 40)
    sess = session(p, 50)  # K is capped at n_items
    b = np.full((2, 1), -1)
    h = np.full((2, 1), -1)
    w = np.zeros((2, 1), np.float32)
    c = np.zeros((2, CTX_DIM), np.float32)
    items, scores = run(sess, b, h, w, c)
    assert items.shape == (2, 40) and np.isfinite(scores).all()
    assert_matches_reference(p, sess, 40, b, h, w, c)
    assert (items[0] == np.argsort(-p.prior, kind="stable")).mean() > 0.9


def test_full_basket_items_never_return() -> None:
    rng = np.random.default_rng(4)
    p = random_params(rng, 60)
    sess = session(p, 60)
    b = np.arange(50)[None, :]
    items, scores = run(sess, b, np.full((1, 1), -1), np.zeros((1, 1), np.float32), np.zeros((1, CTX_DIM), np.float32))
    finite = np.isfinite(scores[0])
    assert sorted(items[0][finite]) == list(range(50, 60))
    assert np.isneginf(scores[0][~finite]).all()


@pytest.mark.parametrize("k", [1, 10, 50])
def test_graph_is_deterministic_bytes(k: int) -> None:
    p = random_params(np.random.default_rng(9), 100)
    one = build_graph(p, k).SerializeToString(deterministic=True)
    two = build_graph(p, k).SerializeToString(deterministic=True)
    assert one == two


@pytest.mark.parametrize("shape", ["none", "one-hot", "few-real-valued", "all-columns"])
def test_context_rows_read_sparsely_or_densely_give_the_reference(shape: str) -> None:
    """The graph reads only the weight rows of context columns in use while they are few
    (SPARSE_CONTEXT_MAX), the whole table otherwise: both paths, at their boundary and for
    non-binary values, are the reference's dense ``context @ W_ctx``."""
    from models.export import SPARSE_CONTEXT_MAX

    rng = np.random.default_rng(11)
    n, k, batch = 400, 20, 3
    p = random_params(rng, n)
    sess = session(p, k)
    c = np.zeros((batch, CTX_DIM), dtype=np.float32)
    if shape == "one-hot":  # 5 columns per row, 3 rows: more than the sparse limit in all
        for row in range(batch):
            c[row, rng.choice(CTX_DIM, 5, replace=False)] = 1.0
        c1 = c[:1]
    if shape == "few-real-valued":  # exactly at the limit, with values other than 1
        cols = rng.choice(CTX_DIM, SPARSE_CONTEXT_MAX, replace=False)
        c[:, cols] = rng.uniform(-3, 3, (batch, SPARSE_CONTEXT_MAX)).astype(np.float32)
    if shape == "all-columns":
        c[:] = rng.uniform(-1, 1, (batch, CTX_DIM)).astype(np.float32)
    b = rng.integers(0, n, (batch, 3))
    h = rng.integers(0, n, (batch, 6))
    w = rng.uniform(0, 1, (batch, 6)).astype(np.float32)
    assert_matches_reference(p, sess, k, b, h, w, c)
    if shape == "one-hot":  # and a single request: 5 columns, the sparse path
        assert_matches_reference(p, sess, k, b[:1], h[:1], w[:1], c1)
