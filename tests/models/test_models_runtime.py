"""Runtime: the public API, input validation (fuzzed), async facade, verified hot swap."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models import Context, ModelError, ModelHolder, Recommender, Scored
from models.context import CTX_DIM, encode_context
from models.validation import WeightedHistory


@pytest.fixture(scope="module")
def rec(small_model: Path) -> Recommender:
    return Recommender.load(small_model, max_basket=8, max_history=16)


def test_recommend_excludes_basket_and_counts_unknown(rec: Recommender) -> None:
    skus = rec.catalog.skus
    result = rec.recommend(
        [skus[0], skus[1], "NOPE"], [(skus[2], 0.4), ("GONE", 1.0)], Context(hour=9, weekday=2, weather="rain"), k=5
    )
    assert len(result) == 5 and all(isinstance(r, Scored) for r in result)
    assert not {skus[0], skus[1]} & {r.sku for r in result}
    assert [r.score for r in result] == sorted((r.score for r in result), reverse=True)
    assert rec.stats["unknown_basket_skus"] >= 1 and rec.stats["unknown_history_skus"] >= 1


def test_empty_request_and_caps(rec: Recommender) -> None:
    assert len(rec.recommend([])) == rec.top_k
    before = dict(rec.stats)
    many = rec.catalog.skus[:20]
    result = rec.recommend(many, [(s, 1.0) for s in rec.catalog.skus[:40]])
    assert rec.stats["basket_truncated"] == before["basket_truncated"] + 1
    assert rec.stats["history_truncated"] == before["history_truncated"] + 1
    assert not set(many[-8:]) & {r.sku for r in result}  # the last max_basket items are kept


def test_requests_are_counted_exactly_from_many_threads(rec: Recommender) -> None:
    """The served-request counter is lock-free (one C-level ``next`` per request); from four
    threads at once, and through the batch path, every request still counts exactly once."""
    skus = rec.catalog.skus
    before = rec.stats["requests"]

    def serve(offset: int) -> None:
        for i in range(50):
            rec.recommend([skus[(offset + i) % len(skus)]], k=3)

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.recommend_batch([([skus[1]], [], None)] * 3)
    with pytest.raises(ModelError):
        rec.recommend([], [], "morning")  # type: ignore[arg-type]  # rejected: not served
    assert rec.stats["requests"] == before + 4 * 50 + 3
    assert rec.stats["requests"] == rec.stats["requests"]  # reading does not advance it


def test_equal_contexts_share_one_read_only_vector(rec: Recommender) -> None:
    from models.validation import context_vector

    first = context_vector(Context(hour=7, weekday=1, weather="rain", zone="bakery"))
    again = context_vector(Context(7, 1, "rain", "bakery"))
    assert again is first and not first.flags.writeable
    assert np.array_equal(first, encode_context(Context(7, 1, "rain", "bakery")))
    # an unhashable field cannot be a cache key: encoded directly, scored all the same
    odd = Context(hour=7, weekday=1, zone=["bakery"])  # type: ignore[arg-type]
    assert np.array_equal(context_vector(odd), encode_context(odd))
    assert rec.recommend([], [], odd, k=3)


def test_history_weights_from_purchase_events(rec: Recommender) -> None:
    sku = rec.catalog.skus[3]
    pairs = rec.history_weights([(sku, 2.0), (sku, 9.0), ("NOPE", 1.0), (sku, float("nan"))])
    assert len(pairs) == 1 and pairs[0][0] == sku and 0 < pairs[0][1] < 1
    with_history = rec.recommend([], pairs, k=rec.top_k)
    assert sku in {r.sku for r in with_history}


def test_a_kernel_history_scores_as_its_plain_pairs_do(rec: Recommender, small_model: Path) -> None:
    """history_weights returns a WeightedHistory: the recommender that made it reads its
    checked arrays instead of the pairs; whichever path a request takes, the scores are the
    ones its plain pairs get, and a cap keeps the heaviest pairs."""
    skus = rec.catalog.skus
    purchases = [(skus[i], float(d)) for d in (1, 5, 9) for i in range(3, 6 + d)]  # 12 skus, bought 1–3 times
    weighted = rec.history_weights(purchases)
    assert isinstance(weighted, WeightedHistory) and len(weighted) == len({s for s, _ in purchases})
    assert weighted.ids.tolist() == [rec.catalog.index(s) for s, _ in weighted]
    assert weighted.weights.tolist() == pytest.approx([w for _, w in weighted], rel=1e-6)
    plain = list(weighted)
    ctx = Context(hour=10, weekday=3)
    assert rec.recommend([skus[0]], weighted, ctx) == rec.recommend([skus[0]], plain, ctx)
    assert rec.recommend_batch([([skus[0]], weighted, ctx), ([], plain, None)]) == rec.recommend_batch(
        [([skus[0]], plain, ctx), ([], weighted, None)]
    )
    assert asyncio.run(rec.arecommend([skus[0]], weighted, ctx)) == rec.recommend([skus[0]], plain, ctx)
    # another recommender (a hot swap, say) checks the pairs as any history's
    other = Recommender.load(small_model, max_basket=8, max_history=16)
    assert other.recommend([skus[0]], weighted, ctx) == other.recommend([skus[0]], plain, ctx)
    other.close()
    # the cap keeps the heaviest pairs, whatever order the kernel lists them in
    top = rec.history_weights(purchases, limit=4)
    assert list(top) == sorted(plain, key=lambda kv: (-kv[1], rec.catalog.index(kv[0])))[:4]
    assert len(rec.history_weights(purchases)) <= rec.max_history
    # a copy or a pickle is a plain history: it cannot carry stale arrays along
    assert type(copy.copy(weighted)) is tuple and type(pickle.loads(pickle.dumps(weighted))) is tuple
    assert rec.history_weights([("NOPE", 1.0)]) == []


def test_request_path_matches_the_array_path(rec: Recommender) -> None:
    """Whichever way the request path encodes a history (every sku known and distinct; or
    unknown and repeated skus, merged by summing), it scores what :meth:`infer` scores on the
    arrays built by hand."""
    skus = rec.catalog.skus
    ctx = Context(hour=17, weekday=4, weather="snow", zone="dairy", channel="app")
    ctx_vec = encode_context(ctx)[None]
    cases = [
        ([skus[4], skus[9]], [(skus[2], 0.7), (skus[11], 0.2)], [4, 9], [2, 11], [0.7, 0.2]),
        (
            [skus[4], "NOPE", skus[9]],
            [(skus[2], 0.5), ("GONE", 1.0), (skus[11], 0.2), (skus[2], 0.25)],
            [4, 9],
            [2, 11],
            [0.75, 0.2],
        ),
    ]
    for basket, history, b_ids, h_ids, weights in cases:
        got = rec.recommend(basket, history, ctx)
        items, scores = rec.infer(np.array([b_ids]), np.array([h_ids]), np.array([weights], dtype=np.float32), ctx_vec)
        assert [r.sku for r in got] == [skus[i] for i in items[0]]
        assert np.array_equal([r.score for r in got], scores[0])


def test_public_session_run_is_the_fallback(rec: Recommender) -> None:
    """On an onnxruntime whose session has no C-level ``_sess.run`` the wrapper goes through
    the public ``session.run`` and answers the same."""
    public_only = SimpleNamespace(run=rec._session.run)
    other = Recommender(
        rec.model_dir,
        public_only,
        rec.manifest,
        rec.catalog,  # type: ignore[arg-type]
        rec.kernel,
        rec.max_basket,
        rec.max_history,
    )
    skus = rec.catalog.skus
    request = ([skus[3]], [(skus[5], 0.6), (skus[8], 0.1)], Context(hour=8, weekday=0))
    assert other.recommend(*request) == rec.recommend(*request)
    assert other.recommend_batch([request]) == rec.recommend_batch([request])
    other.close()


def test_batch_matches_single(rec: Recommender) -> None:
    skus = rec.catalog.skus
    reqs = [([skus[5]], [], Context(18, 5)), ([], [(skus[7], 0.5)], None), ([skus[1]], [], None)]
    batch = rec.recommend_batch(reqs, k=7)
    for req, got in zip(reqs, batch, strict=True):
        single = rec.recommend(*req, k=7)
        assert [r.sku for r in got] == [r.sku for r in single]
        assert np.allclose([r.score for r in got], [r.score for r in single], atol=1e-5)


def test_arecommend_runs_off_the_event_loop(rec: Recommender) -> None:
    async def main() -> list[Scored]:
        loop_thread = asyncio.get_running_loop()
        assert loop_thread is not None
        return await rec.arecommend([rec.catalog.skus[0]], k=3)

    assert len(asyncio.run(main())) == 3


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda r: r.recommend("SKU00001"), "sequence"),
        (lambda r: r.recommend([1, 2]), "strings"),
        (lambda r: r.recommend([], [("SKU00001", float("nan"))]), "weight"),
        (lambda r: r.recommend([], [("SKU00001", -1.0)]), "weight"),
        (lambda r: r.recommend([], [("SKU00001",)]), "pairs"),
        (lambda r: r.recommend([], [("SKU00001", 1.0), ("SKU00002",)]), "pairs"),
        (lambda r: r.recommend([], [("SKU00001", 1.0), (5, 1.0)]), "pairs"),
        (lambda r: r.recommend([], [(["SKU00001"], 1.0)]), "pairs"),
        (lambda r: r.recommend([], [("SKU00001", True)]), "pairs"),
        (lambda r: r.recommend([], [("SKU00001", 1.0), ("SKU00002", float("nan"))]), "weight"),
        (lambda r: r.recommend(["SKU00001", ["SKU00002"]]), "strings"),
        (lambda r: r.recommend(["SKU00001", b"SKU00002"]), "strings"),
        (lambda r: r.recommend([], [], Context(hour=24, weekday=0)), "hour"),
        (lambda r: r.recommend([], [], "morning"), "context"),
        (lambda r: r.recommend([], k=0), "k must"),
    ],
)
def test_bad_requests_raise_model_error(rec: Recommender, call, reason: str) -> None:
    with pytest.raises(ModelError, match=reason):
        call(rec)


shapes = st.one_of(
    st.tuples(st.integers(0, 3), st.integers(0, 5)), hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
)
any_arrays = st.sampled_from([np.int64, np.int32, np.uint8, np.float32, np.float64, np.bool_, np.float16]).flatmap(
    lambda dt: hnp.arrays(dt, shapes)
)
id_arrays = st.one_of(
    any_arrays,
    hnp.arrays(np.int64, shapes, elements=st.one_of(st.integers(-1, 199), st.sampled_from([-2, 200, 2**62, -(2**63)]))),
)
weight_arrays = st.one_of(
    any_arrays,
    hnp.arrays(np.float32, shapes, elements=st.floats(-1, 1e7, width=32)),
)
ctx_arrays = st.one_of(
    any_arrays,
    hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.just(CTX_DIM)), elements=st.floats(width=32)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=id_arrays, h=id_arrays, w=weight_arrays, c=ctx_arrays)
def test_fuzz_infer_only_raises_model_error(rec: Recommender, b, h, w, c) -> None:
    try:
        items, scores = rec.infer(b, h, w, c)
    except ModelError:
        return
    assert items.shape == scores.shape and items.shape[0] == b.shape[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    basket=st.one_of(
        st.text(max_size=3),
        st.lists(
            st.one_of(st.text(max_size=8), st.integers(), st.none(), st.sampled_from(["SKU00001", "SKU00199"])),
            max_size=10,
        ),
    ),
    history=st.one_of(
        st.none(),
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(["SKU00002", "x"]), st.floats(allow_nan=True)),
                st.tuples(st.integers(), st.integers()),
                st.text(max_size=2),
            ),
            max_size=5,
        ),
    ),
    hour=st.integers(-5, 30),
    weekday=st.integers(-2, 9),
    k=st.one_of(st.none(), st.integers(-2, 99)),
)
def test_fuzz_recommend_only_raises_model_error(rec: Recommender, basket, history, hour, weekday, k) -> None:
    try:
        rec.recommend(basket, history, Context(hour=hour, weekday=weekday), k=k)
    except ModelError:
        pass


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def corrupt_sha(d: Path) -> None:
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))


def truncate(d: Path) -> None:
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 3])
    manifest = json.loads((d / "manifest.json").read_text())
    from models.export import file_sha256

    manifest["model_sha256"] = file_sha256(d / "model.onnx")  # even a "valid" sha can't save it
    (d / "manifest.json").write_text(json.dumps(manifest))


def wrong_catalog(d: Path) -> None:
    text = (d / "catalog.csv").read_text().replace("SKU00001", "SKU99999")
    (d / "catalog.csv").write_text(text)


def no_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


def bad_history(d: Path) -> None:
    (d / "history.json").write_text("{}")


@pytest.mark.parametrize("damage", [corrupt_sha, truncate, wrong_catalog, no_manifest, bad_history])
def test_swap_refuses_corrupt_model_and_keeps_serving(small_model: Path, tmp_path: Path, damage) -> None:
    holder = ModelHolder(small_model)
    old = holder.current
    bad = copy_model(small_model, tmp_path / "bad")
    damage(bad)
    with pytest.raises(ModelError):
        holder.swap(bad)
    assert holder.current is old and holder.failed_swaps == 1
    assert holder.current.recommend([old.catalog.skus[0]], k=3)


def test_swap_to_good_model(small_model: Path, tmp_path: Path) -> None:
    holder = ModelHolder(small_model)
    old = holder.current
    holder.swap(copy_model(small_model, tmp_path / "new"))
    assert holder.current is not old and holder.swaps == 1
    assert holder.current.recommend([], k=2)


def test_load_errors_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no manifest"):
        Recommender.load(tmp_path)
    (tmp_path / "manifest.json").write_text("not json")
    with pytest.raises(ModelError, match="unreadable"):
        Recommender.load(tmp_path)
