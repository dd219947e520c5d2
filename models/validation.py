"""Validation helpers of the runtime's request path (kept apart so ``runtime`` stays small).

:func:`encode_request` turns one request into ids, weights and the context vector with C-level
passes (``map``, ``set(map(type, …))``, ``min``/``max``/``sum``); the other helpers give the
exact answer and the error message when a quick test fails, and encode the context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import cast

import numpy as np

from .context import CTX_DIM, Context, encode_context
from .errors import ModelError

__all__ = [
    "MAX_WEIGHT",
    "NUMBER_TYPES",
    "PAIR_TYPES",
    "STR_TYPES",
    "TWO",
    "WeightedHistory",
    "check_pairs",
    "context_vector",
    "encode_request",
    "weighted_history",
]

MAX_WEIGHT = 1e6
NUMBER = (int, float, np.integer, np.floating)
_SEQUENCES = {list, tuple}  # the usual request shapes, accepted without the ABC check
STR_TYPES = {str}
PAIR_TYPES = {tuple, list}
TWO = {2}
NUMBER_TYPES = {
    int,
    float,
    np.float64,
    np.float32,
    np.float16,
    np.int64,
    np.int32,
    np.int16,
    np.int8,
    np.uint64,
    np.uint32,
    np.uint16,
    np.uint8,
}


_CONTEXT_CACHE_SIZE = 4096
# encoded context vectors by context: a plain dict, whose lookup is one C call where an
# lru_cache wrapper adds its own bookkeeping; only validated contexts are stored
_CONTEXT_VECTORS: dict[Context, np.ndarray] = {}


class WeightedHistory(tuple[tuple[str, float], ...]):
    """``(sku, weight)`` pairs as :meth:`models.runtime.Recommender.history_weights` returns
    them: a tuple like any history, which also carries its graph inputs — the catalog ids
    (int64) and weights (float32), checked once when it was made — so the recommender that made
    it skips the per-pair validation and lookups (the largest part of a 2,000-SKU request's
    Python time). Any other recommender, or any other history, takes the checked path."""

    ids: np.ndarray
    weights: np.ndarray
    positions: Mapping[str, int]

    def __new__(
        cls, pairs: Sequence[tuple[str, float]], ids: np.ndarray, weights: np.ndarray, positions: Mapping[str, int]
    ) -> WeightedHistory:
        self = super().__new__(cls, pairs)
        ids.flags.writeable = weights.flags.writeable = False
        self.ids, self.weights, self.positions = ids, weights, positions
        return self

    def __reduce__(self) -> tuple[type[tuple[tuple[str, float], ...]], tuple[tuple[tuple[str, float], ...]]]:
        return tuple, (tuple(self),)  # a copy or a pickle is a plain history


def weighted_history(
    keys: list[str], items: np.ndarray, weights: np.ndarray, positions: Mapping[str, int], cap: int
) -> Sequence[tuple[str, float]]:
    """A history kernel's skus, catalog ids and weights (:meth:`HistoryKernel.weigh`; its rates
    are checked in [0, 1] when the model loads) cut to the ``cap`` heaviest, as a
    :class:`WeightedHistory` for the recommender whose catalog ``positions`` these are."""
    if not keys:
        return []
    if len(keys) > cap:
        # the kernel lists items in first-purchase order: keep the heaviest, not the oldest
        # (ties by catalog id, as the recommender's own max_history cap breaks them)
        order = np.lexsort((items, -weights))[:cap]
        keys, items, weights = [keys[j] for j in order], items[order], weights[order]
    pairs = list(zip(keys, weights.tolist(), strict=True))
    return WeightedHistory(pairs, items.astype(np.int64), weights.astype(np.float32), positions)


def check_pairs(history: Sequence[object]) -> None:
    """The slow, exact check behind the fast type-set test: accepts subclasses (a str
    subclass, a named tuple), raises ModelError for anything that is not (sku, number)."""
    for entry in history:
        try:
            sku, weight = cast("Iterable[object]", entry)  # raises as below when it is not a pair
        except (TypeError, ValueError):
            raise ModelError("history entries must be (sku, weight) pairs") from None
        if not isinstance(sku, str) or not isinstance(weight, NUMBER) or isinstance(weight, bool):
            raise ModelError("history entries must be (sku: str, weight: number) pairs")


_NO_CONTEXT = np.zeros(CTX_DIM, dtype=np.float32)
_NO_CONTEXT.flags.writeable = False


def context_vector(context: Context | None) -> np.ndarray:
    """The encoded context, validated; None means no context information."""
    if context is None:
        return _NO_CONTEXT
    if not isinstance(context, Context):
        raise ModelError("context must be a models.Context or None")
    if not (type(context.hour) is int and 0 <= context.hour < 24):
        raise ModelError(f"context hour {context.hour!r} is not 0–23")
    if not (type(context.weekday) is int and 0 <= context.weekday < 7):
        raise ModelError(f"context weekday {context.weekday!r} is not 0 (Mon)–6 (Sun)")
    try:
        vec = _CONTEXT_VECTORS.get(context)
    except TypeError:  # an unhashable field (e.g. a list as zone): encode without the cache
        return encode_context(context)
    if vec is None:
        vec = encode_context(context)
        vec.flags.writeable = False
        if len(_CONTEXT_VECTORS) >= _CONTEXT_CACHE_SIZE:
            _CONTEXT_VECTORS.clear()  # a store's working set is far smaller; no per-entry eviction
        _CONTEXT_VECTORS[context] = vec
    return vec


def encode_request(
    positions: Mapping[str, int],
    basket: Sequence[str],
    history: Sequence[tuple[str, float]],
    context: Context | None,
    max_basket: int,
    max_history: int,
    count: Callable[[str, int], None],
) -> tuple[list[int], list[int] | np.ndarray, list[float] | np.ndarray, np.ndarray]:
    """One request as basket ids, history ids and weights, and the context vector. Unknown
    skus and truncations are reported to ``count(stat, amount)``; anything malformed raises
    ModelError (or TypeError/ValueError, which the caller reports as a malformed request)."""
    if type(basket) not in _SEQUENCES and (isinstance(basket, (str, bytes)) or not isinstance(basket, Sequence)):
        raise ModelError("basket must be a sequence of SKU strings")
    if type(history) not in _SEQUENCES and (isinstance(history, (str, bytes)) or not isinstance(history, Sequence)):
        raise ModelError("history must be a sequence of (sku, weight) pairs")
    # C-level passes (map/set/all) instead of a Python loop per entry: this runs before
    # every inference, and at 2,000 SKUs the inference itself takes only ≈ 50 µs
    # an entry the catalog knows is a SKU string (its keys are), so the type test only
    # runs when some entry is not found or not even hashable
    get = positions.get
    try:
        found: list[int | None] = list(map(get, basket))
    except TypeError:
        found = [None]
    items = cast("list[int]", found)
    if None in found:
        if not set(map(type, basket)) <= STR_TYPES:
            bad = next((s for s in basket if not isinstance(s, str)), None)
            if bad is not None:
                raise ModelError(f"basket entries must be SKU strings, got {type(bad).__name__}")
        items = [i for i in found if i is not None]
        count("unknown_basket_skus", len(basket) - len(items))
    if len(items) > max_basket:
        count("basket_truncated", 1)
        items = items[-max_basket:]
    if not history:
        return items, [], [], context_vector(context)
    if type(history) is WeightedHistory and history.positions is positions and len(history) <= max_history:
        return items, history.ids, history.weights, context_vector(context)
    # transposing first checks the shape too: entries that are not all 2-long (or not
    # iterable) fail here, and check_pairs then names what is wrong; every sku and weight
    # is type-checked below, so whatever unpacks is a (str, number) pair
    try:
        skus, values = zip(*history, strict=True)
    except (TypeError, ValueError):
        check_pairs(history)
        raise ModelError("history entries must be (sku, weight) pairs") from None
    if not set(map(type, values)) <= NUMBER_TYPES:
        check_pairs(history)
    # a NaN anywhere makes the sum NaN (min/max alone may step over it); the range test
    # comes first, so the sum never meets a huge integer
    if not (0 <= min(values) and max(values) <= MAX_WEIGHT) or math.isnan(sum(values)):
        bad = next(w for w in values if not 0 <= w <= MAX_WEIGHT)
        raise ModelError(f"history weight {bad!r} is not in [0, {MAX_WEIGHT:g}]")
    try:
        ids: list[int | None] = list(map(get, skus))
    except TypeError:  # an unhashable "sku"
        ids = [None]
    if None in ids:
        if not set(map(type, skus)) <= STR_TYPES:
            check_pairs(history)  # names the entry that is not a (sku, weight) pair
        count("unknown_history_skus", ids.count(None))
    elif len(ids) <= max_history and len(set(ids)) == len(ids):
        # the usual request: every sku known, none twice, within max_history
        return items, cast("list[int]", ids), list(values), context_vector(context)
    weights: dict[int, float] = {}
    for i, weight in zip(ids, values, strict=True):
        if i is not None:
            weights[i] = weights.get(i, 0.0) + weight
    if len(weights) > max_history:
        count("history_truncated", 1)
        kept = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:max_history]
        weights = dict(kept)
    return items, list(weights), list(weights.values()), context_vector(context)
