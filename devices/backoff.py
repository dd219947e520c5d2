"""The one retry delay used by every reconnect loop in the device layer (house rule 5).

Pure: the random source is passed in, so the schedule is testable and reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    *,
    base_s: float = 0.5,
    cap_s: float = 30.0,
    jitter: float = 0.5,
    retry_after_s: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Exponential (``base_s * 2**attempt``, capped at ``cap_s``) with "equal jitter": the result is
    drawn from ``[d * (1 - jitter), d]`` so reconnecting devices spread out but never retry
    immediately. A server's ``retry_after_s`` is honoured as a floor — never retry sooner than
    asked — even when it exceeds the cap.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within [0, 1]")
    exponent = min(attempt, 62)  # 2**62 * base already exceeds any sane cap; avoids overflow
    delay = min(cap_s, base_s * float(2**exponent))
    delay -= delay * jitter * rng()
    if retry_after_s is not None and retry_after_s > delay:
        return float(retry_after_s)
    return delay
