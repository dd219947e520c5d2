"""The request context and its one encoding into the model's context vector.

Training and the runtime both call :func:`encode_context`, so the vector a model was trained on
is, by construction, the vector it is served with. The layout is one-hot groups; an unknown value
encodes as all zeros in its group, which the model reads as "no information" (the context bias
of that group is simply absent).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

__all__ = [
    "CHANNELS",
    "CTX_DIM",
    "CTX_GROUPS",
    "Context",
    "HOUR_BINS",
    "WEATHERS",
    "ZONE_BUCKETS",
    "encode_context",
    "encode_contexts",
]

HOUR_BINS = 8
"""Hours are encoded in 3-hour day parts: finer bins are too sparse to learn per item."""
WEATHERS = ("clear", "cloudy", "rain", "snow", "hot", "cold")
CHANNELS = ("kiosk", "pos", "app", "tablet", "display", "web")
ZONE_BUCKETS = 8
"""Zones are store-specific names, hashed (stably) into a fixed number of slots."""

CTX_GROUPS: tuple[tuple[str, int], ...] = (
    ("hour", HOUR_BINS),
    ("weekday", 7),
    ("weather", len(WEATHERS)),
    ("zone", ZONE_BUCKETS),
    ("channel", len(CHANNELS)),
)
CTX_DIM = sum(size for _, size in CTX_GROUPS)


class Context(NamedTuple):
    """When and where a recommendation is asked for. ``weekday`` is 0 = Monday … 6 = Sunday.

    A named tuple, not a frozen dataclass: the runtime looks each request's context up in a
    cache of encoded vectors, and a tuple hashes and compares in C where a dataclass runs its
    generated Python ``__hash__``/``__eq__`` (≈ 3 µs of a 2,000-SKU request, cache-cold)."""

    hour: int
    weekday: int
    weather: str = "unknown"
    zone: str | None = None
    channel: str = "kiosk"


def _zone_slot(zone: str) -> int:
    return int.from_bytes(hashlib.sha256(zone.encode("utf-8")).digest()[:4], "big") % ZONE_BUCKETS


def _slots(ctx: Context) -> list[int]:
    """Active positions of the context vector; out-of-range or unknown values are left out."""
    slots: list[int] = []
    offset = 0
    hour, weekday = ctx.hour, ctx.weekday
    if isinstance(hour, int) and not isinstance(hour, bool) and 0 <= hour < 24:
        slots.append(offset + hour * HOUR_BINS // 24)
    offset += HOUR_BINS
    if isinstance(weekday, int) and not isinstance(weekday, bool) and 0 <= weekday < 7:
        slots.append(offset + weekday)
    offset += 7
    if ctx.weather in WEATHERS:
        slots.append(offset + WEATHERS.index(ctx.weather))
    offset += len(WEATHERS)
    if isinstance(ctx.zone, str) and ctx.zone:
        slots.append(offset + _zone_slot(ctx.zone))
    offset += ZONE_BUCKETS
    if ctx.channel in CHANNELS:
        slots.append(offset + CHANNELS.index(ctx.channel))
    return slots


def encode_context(ctx: Context) -> np.ndarray:
    """Encode one context as a float32 vector of length :data:`CTX_DIM` (pure function)."""
    vec = np.zeros(CTX_DIM, dtype=np.float32)
    vec[_slots(ctx)] = 1.0
    return vec


def encode_contexts(contexts: list[Context]) -> np.ndarray:
    """Encode many contexts into a ``[len(contexts), CTX_DIM]`` float32 matrix."""
    out = np.zeros((len(contexts), CTX_DIM), dtype=np.float32)
    for row, ctx in enumerate(contexts):
        out[row, _slots(ctx)] = 1.0
    return out
