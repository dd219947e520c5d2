"""Validation helpers of the runtime's request path (kept apart so ``runtime`` stays small).

The hot path tests a whole request with C-level passes (``set(map(type, …))``); these give the
exact answer and the error message when that quick test fails, and encode the context.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np

from .context import CTX_DIM, Context, encode_context
from .errors import ModelError

__all__ = ["NUMBER_TYPES", "PAIR_TYPES", "STR_TYPES", "TWO", "check_pairs", "context_vector"]

NUMBER = (int, float, np.integer, np.floating)
STR_TYPES = {str}
PAIR_TYPES = {tuple, list}
TWO = {2}
NUMBER_TYPES = {int, float, np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                np.int8, np.uint64, np.uint32, np.uint16, np.uint8}


@functools.lru_cache(maxsize=4096)
def _cached_context(context: Context) -> np.ndarray:
    vec = encode_context(context)
    vec.flags.writeable = False
    return vec


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
        return _cached_context(context)
    except TypeError:  # an unhashable field (e.g. a list as zone): encode without the cache
        return encode_context(context)
