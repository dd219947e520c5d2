"""The recommender as the gateway uses it: verified load, validated requests, async facade.

* :meth:`Recommender.load` checks the manifest, the sha256 of ``model.onnx`` and
  ``history.json``, the catalog hash, the graph signature, and runs a warm-up inference —
  any failure is a :class:`~models.errors.ModelError` saying what to do.
* Requests name SKUs; unknown ones are ignored and counted in ``stats``. Baskets keep their last
  ``max_basket`` items, histories their ``max_history`` heaviest entries.
* :meth:`Recommender.infer` is the array-level entry (also used by evaluation). Every malformed
  input — wrong dtype or shape, ids < -1 or ≥ n_items, NaN or negative weights — raises
  ModelError before ONNX Runtime sees it; nothing else escapes.
* :meth:`Recommender.arecommend` runs inference on a dedicated single-thread executor so the
  event loop never blocks. :class:`ModelHolder` swaps models atomically and keeps the old one
  on any failure.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import onnxruntime as ort

from .batching import MicroBatcher
from .catalog import Catalog, load_catalog
from .context import CTX_DIM, Context
from .errors import DataError, ModelError
from .history import HistoryKernel
from .interface import INPUTS, OUTPUTS
from .manifest import check_file, read_manifest
from .validation import MAX_WEIGHT, WeightedHistory, encode_request, weighted_history

_T = TypeVar("_T")

__all__ = ["Context", "ModelHolder", "Recommender", "Request", "Scored", "WeightedHistory"]

MAX_CONTEXT = 1e3
MAX_BATCH = 1024
_NEG_INF = float("-inf")
_PAD_ID = [-1]
_PAD_WEIGHT = [0.0]
_new_tuple = tuple.__new__

Request = tuple[Sequence[str], Sequence[tuple[str, float]], "Context | None"]


class Scored(NamedTuple):
    """One recommended product and its model score (higher is better; log scale).

    A named tuple, not a dataclass: a request builds up to K of them, and a frozen dataclass
    costs several times a tuple to create (bench/recommend.py's 2,000-SKU wrapper ratio)."""

    sku: str
    score: float


class Recommender:
    """A loaded, verified model. Use :meth:`load`; instances are safe to share across threads."""

    def __init__(
        self,
        model_dir: Path,
        session: ort.InferenceSession,
        manifest: dict[str, Any],
        catalog: Catalog,
        kernel: HistoryKernel,
        max_basket: int,
        max_history: int,
    ) -> None:
        self.model_dir = model_dir
        self.manifest = manifest
        self.catalog = catalog
        self.kernel = kernel
        self.max_basket = max_basket
        self.max_history = max_history
        self.top_k = int(manifest["top_k"])
        self.n_items = len(catalog)
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "unknown_basket_skus",
                "unknown_history_skus",
                "basket_truncated",
                "history_truncated",
                "rejected",
            ),
            0,
        )
        # served requests: a C-level counter, thread-safe without the stats lock (which costs
        # ≈ 3 µs of a 2,000-SKU request once the inference has pushed it out of the caches)
        self._served = itertools.count()
        self._session = session
        # the C-level run of the session, with the output names cached: the public
        # ``session.run`` re-validates the feed names, re-reads the output names and checks
        # for OrtValues and graph capture on every call (≈ 8 µs, a tenth of a 2,000-SKU
        # inference); the wrapper has already checked every input, and its session is
        # CPU-only (no provider fallback to handle). Falls back to the public call on an
        # onnxruntime without it.
        raw = getattr(getattr(session, "_sess", None), "run", None)
        self._output_names = list(OUTPUTS)
        self._raw_run: Callable[..., list[np.ndarray]] = (
            raw if callable(raw) else lambda names, feeds, _options: session.run(names, feeds)
        )
        # the SKUs as an object array: one fancy index picks the top k names without a Python
        # int per id (≈ 3 µs of a 2,000-SKU request; 8 bytes per SKU)
        self._sku_array = np.array(catalog.skus, dtype=object)
        self._positions = catalog.positions
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recommender")
        self._batcher = MicroBatcher(self._executor, self.recommend_batch, self.recommend)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        max_basket: int = 64,
        max_history: int = 128,
        prepack: bool = True,
    ) -> Recommender:
        """Verify and load ``model_dir``; raises ModelError with the reason on any problem.

        ``prepack=False`` saves a packed copy of the scoring table (4 × (dim + 36) bytes per
        SKU: ≈ 19 MiB at 50,000 SKUs) at the price of slow micro-batches."""
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir)
        check_file(model_dir / "model.onnx", manifest["model_sha256"])
        check_file(model_dir / "history.json", manifest["history_sha256"])
        try:
            catalog = load_catalog(model_dir / "catalog.csv")
        except DataError as exc:
            raise ModelError(f"model catalog is unusable: {exc}") from None
        if catalog.sha256() != manifest["catalog_sha256"] or len(catalog) != manifest["n_items"]:
            raise ModelError(
                f"{model_dir}/catalog.csv is not the catalog this model was trained on "
                "(hash or size differs); ship the model directory as a whole"
            )
        try:
            kernel = HistoryKernel.from_json(
                json.loads((model_dir / "history.json").read_text(encoding="utf-8")), len(catalog)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{model_dir}/history.json is invalid: {exc}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not prepack:
            # no packed copy of the scoring table beside the original (which the embedding
            # lookups still need): −1× table size in RAM, but every multi-row micro-batch then
            # packs the table again (≈3× the time of a single request at 2 rows)
            options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types; convert at the boundary
            raise ModelError(f"{model_dir}/model.onnx cannot be loaded: {exc}") from None
        names_in = tuple(i.name for i in session.get_inputs())
        names_out = tuple(o.name for o in session.get_outputs())
        if names_in != INPUTS or names_out != OUTPUTS:
            raise ModelError(f"{model_dir}/model.onnx has signature {names_in} → {names_out}")
        rec = cls(model_dir, session, manifest, catalog, kernel, max_basket, max_history)
        rec.smoke_test()
        return rec

    @property
    def stats(self) -> dict[str, int]:
        """Counts since load: requests served, unknown SKUs ignored, truncations, rejections."""
        with self._lock:
            counts = dict(self._stats)
        # the counter's repr, ``count(N)``, is the only way to read N without advancing it
        # (copying a counter is deprecated since Python 3.12)
        return {"requests": int(repr(self._served)[6:-1])} | counts

    def smoke_test(self) -> None:
        """Infer on an empty request and a one-item basket; ModelError unless both look sane."""
        for basket in ([], [self.catalog.skus[0]]):
            result = self.recommend(basket, (), None)
            if not result or not all(math.isfinite(r.score) for r in result):
                raise ModelError(f"{self.model_dir}: smoke inference returned no valid scores")
            if basket and basket[0] in {r.sku for r in result}:
                raise ModelError(f"{self.model_dir}: smoke inference returned a basket item")
        self._served = itertools.count()

    def history_weights(
        self, purchases: Sequence[tuple[str, float]], limit: int | None = None
    ) -> Sequence[tuple[str, float]]:
        """Purchase events ``(sku, days_ago)`` → the ``(sku, weight)`` history to pass: one pair
        per known sku, the heaviest ``limit`` (≤ ``max_history``), as a
        :class:`~models.validation.WeightedHistory` this recommender takes without re-checking."""
        index = {
            sku: i for sku, _ in purchases if isinstance(sku, str) for i in [self.catalog.index(sku)] if i is not None
        }
        cap = self.max_history if limit is None else max(0, min(limit, self.max_history))
        return weighted_history(*self.kernel.weigh(index, purchases), self._positions, cap)

    def _count(self, key: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._stats[key] += amount

    def _encode(
        self, basket: Sequence[str], history: Sequence[tuple[str, float]], context: Context | None
    ) -> tuple[list[int], list[int] | np.ndarray, list[float] | np.ndarray, np.ndarray]:
        return encode_request(self._positions, basket, history, context, self.max_basket, self.max_history, self._count)

    def infer(
        self,
        basket: np.ndarray,
        history: np.ndarray,
        history_weights: np.ndarray,
        context: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run the graph on validated arrays; returns (top_items [B, K] int64, top_scores)."""
        arrays = {"basket": basket, "history": history, "history_weights": history_weights, "context": context}
        for name, arr in arrays.items():
            if not isinstance(arr, np.ndarray) or arr.ndim != 2:
                raise ModelError(f"{name} must be a 2-D numpy array")
        batch = basket.shape[0]
        if not 1 <= batch <= MAX_BATCH or any(a.shape[0] != batch for a in arrays.values()):
            raise ModelError(f"all inputs need the same batch size, 1–{MAX_BATCH}")
        if history.shape != history_weights.shape:
            raise ModelError("history and history_weights must have the same shape")
        if basket.shape[1] > self.max_basket or history.shape[1] > self.max_history:
            raise ModelError("basket or history wider than max_basket/max_history")
        if context.shape[1] != CTX_DIM:
            raise ModelError(f"context must have {CTX_DIM} columns")
        for name in ("basket", "history"):
            arr = arrays[name]
            if arr.dtype.kind not in "iu":
                raise ModelError(f"{name} must hold integers, not {arr.dtype}")
            if arr.size and (arr.min() < -1 or arr.max() >= self.n_items):
                raise ModelError(f"{name} ids must be -1 (padding) or 0–{self.n_items - 1}")
        for name, limit in (("history_weights", MAX_WEIGHT), ("context", MAX_CONTEXT)):
            arr = arrays[name]
            if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
                raise ModelError(f"{name} must hold numbers, not {arr.dtype}")
            with np.errstate(all="ignore"):
                values = arr.astype(np.float64)
            if arr.size and (not np.isfinite(values).all() or np.abs(values).max() > limit):
                raise ModelError(f"{name} must be finite with magnitude ≤ {limit:g}")
        if history_weights.size and history_weights.min() < 0:
            raise ModelError("history_weights must be ≥ 0")
        return self._run(
            {
                "basket": np.ascontiguousarray(basket, dtype=np.int64),
                "history": np.ascontiguousarray(history, dtype=np.int64),
                "history_weights": np.ascontiguousarray(history_weights, dtype=np.float32),
                "context": np.ascontiguousarray(context, dtype=np.float32),
            }
        )

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Inference on feeds already in the graph's dtypes and within range."""
        batch = feeds["basket"].shape[0]
        for name in ("basket", "history"):
            if feeds[name].shape[1] == 0:
                feeds[name] = np.full((batch, 1), -1, dtype=np.int64)
        if feeds["history_weights"].shape[1] == 0:
            feeds["history_weights"] = np.zeros((batch, 1), dtype=np.float32)
        try:
            items, scores = self._raw_run(self._output_names, feeds, None)
        except Exception as exc:  # ORT's own exception types; convert at the boundary
            raise ModelError(f"inference failed: {exc}") from None
        return items, scores

    def _decode(self, items: np.ndarray, scores: np.ndarray, k: int) -> list[Scored]:
        top_scores = scores[:k].tolist()
        names = self._sku_array[items[:k]].tolist()
        if top_scores[-1] != _NEG_INF:  # sorted: no padding (−inf) among the top k
            # ``tuple.__new__(Scored, pair)`` is what ``Scored(sku, score)`` does after its
            # Python-level ``__new__``: mapped in C it builds the k results in ≈ half the time
            # (≈ 8 µs less of a 2,000-SKU request, cache-cold)
            return list(map(_new_tuple, itertools.repeat(Scored, len(names)), zip(names, top_scores, strict=True)))
        return [Scored(n, s) for n, s in zip(names, top_scores, strict=True) if math.isfinite(s)]

    def _k(self, k: int | None) -> int:
        if k is None:
            return self.top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ModelError(f"k must be a positive integer, got {k!r}")
        return min(k, self.top_k)

    def _checked(self, encode: Callable[[], _T]) -> _T:
        """Run ``encode``; a malformed request is counted as rejected and raised as ModelError."""
        try:
            return encode()
        except (TypeError, ValueError) as exc:
            self._count("rejected")
            raise ModelError(f"malformed request: {exc}") from None
        except ModelError:
            self._count("rejected")
            raise

    def recommend_batch(self, requests: Sequence[Request], k: int | None = None) -> list[list[Scored]]:
        """Score many ``(basket, history, context)`` requests in one inference."""
        limit = self._k(k)
        if not requests:
            return []
        encoded = self._checked(lambda: [self._encode(*req) for req in requests])
        results: list[list[Scored]] = []
        for lo in range(0, len(encoded), MAX_BATCH):
            chunk = encoded[lo : lo + MAX_BATCH]
            wb = max(1, max(len(e[0]) for e in chunk))
            wh = max(1, max(len(e[1]) for e in chunk))
            basket = np.full((len(chunk), wb), -1, dtype=np.int64)
            hist = np.full((len(chunk), wh), -1, dtype=np.int64)
            weights = np.zeros((len(chunk), wh), dtype=np.float32)
            for row, (b, h, w, _) in enumerate(chunk):
                basket[row, : len(b)] = b
                hist[row, : len(h)] = h
                weights[row, : len(w)] = w
            ctx = np.stack([e[3] for e in chunk])
            items, scores = self._run({"basket": basket, "history": hist, "history_weights": weights, "context": ctx})
            results.extend(self._decode(items[r], scores[r], limit) for r in range(len(chunk)))
        for _ in requests:
            next(self._served)
        return results

    def recommend(
        self,
        basket: Sequence[str],
        history: Sequence[tuple[str, float]] = (),
        context: Context | None = None,
        k: int | None = None,
    ) -> list[Scored]:
        """Top ``k`` (default: the model's K) products for one shopper, best first."""
        limit = self.top_k if k is None else self._k(k)
        try:  # as _checked and _encode, inline: this path runs once per request
            b, h, w, ctx_vec = encode_request(
                self._positions, basket, history, context, self.max_basket, self.max_history, self._count
            )
        except (TypeError, ValueError) as exc:
            self._count("rejected")
            raise ModelError(f"malformed request: {exc}") from None
        except ModelError:
            self._count("rejected")
            raise
        try:
            # 1-D conversions plus a view: numpy converts a flat list ≈ twice as fast as a
            # nested one
            items, scores = self._raw_run(
                self._output_names,
                {
                    "basket": np.array(b or _PAD_ID, dtype=np.int64)[None],
                    # a WeightedHistory's arrays as they are; lists converted
                    "history": h[None] if type(h) is np.ndarray else np.array(h or _PAD_ID, dtype=np.int64)[None],
                    "history_weights": (
                        w[None] if type(w) is np.ndarray else np.array(w or _PAD_WEIGHT, dtype=np.float32)[None]
                    ),
                    "context": ctx_vec[None],
                },
                None,
            )
        except Exception as exc:  # ORT's own exception types; convert at the boundary
            raise ModelError(f"inference failed: {exc}") from None
        next(self._served)
        return self._decode(items[0], scores[0], limit)

    async def arecommend(
        self,
        basket: Sequence[str],
        history: Sequence[tuple[str, float]] = (),
        context: Context | None = None,
        k: int | None = None,
    ) -> list[Scored]:
        """:meth:`recommend` on the model's own single-thread executor, off the event loop.

        Concurrent calls are micro-batched (:class:`models.batching.MicroBatcher`): while one
        inference runs, later requests queue and the next run scores them together in one
        ``session.run``, so a busy store gets batch throughput and a quiet one keeps
        single-request latency.
        """
        # snapshots (inference runs later, on another thread); a WeightedHistory is immutable
        kept = history if type(history) is WeightedHistory else tuple(history)
        scored: list[Scored] = await self._batcher.submit((tuple(basket), kept, context), k)
        return scored

    def close(self) -> None:
        """Stop the executor thread once in-flight calls finish."""
        self._executor.shutdown(wait=False)


class ModelHolder:
    """The serving model, swappable atomically; a failed swap leaves the old model serving."""

    def __init__(self, model_dir: Path, **load_kwargs: Any) -> None:
        self._load_kwargs = load_kwargs
        self._current = Recommender.load(Path(model_dir), **load_kwargs)
        self._swap_lock = threading.Lock()
        self.swaps = 0
        self.failed_swaps = 0

    @property
    def current(self) -> Recommender:
        return self._current

    def swap(self, new_dir: Path) -> None:
        """Load, verify and smoke-test ``new_dir``, then serve it; ModelError keeps the old one."""
        with self._swap_lock:
            try:
                candidate = Recommender.load(Path(new_dir), **self._load_kwargs)
            except ModelError:
                self.failed_swaps += 1
                raise
            except Exception as exc:  # anything unforeseen must not take the old model down
                self.failed_swaps += 1
                raise ModelError(f"{new_dir}: cannot load model: {exc}") from None
            self._current = candidate
            self.swaps += 1
