"""The one retry delay of every reconnect/retry loop in the gateway (house rule 5), Retry-After
parsing, and the check each loop makes before it backs off (:func:`raise_if_cancelled`).

The first two are pure: the random source and the clock are parameters, so schedules are reproducible.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from email.utils import parsedate_to_datetime

__all__ = ["backoff_delay", "parse_retry_after", "raise_if_cancelled"]

#: A longer Retry-After is cut to this: a broken server must not park a sink for days.
MAX_RETRY_AFTER_S = 3600.0


def backoff_delay(
    attempt: int,
    *,
    base_s: float = 0.5,
    cap_s: float = 60.0,
    jitter: float = 0.5,
    retry_after_s: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Exponential (``base_s * 2**attempt`` capped at ``cap_s``) with equal jitter: drawn from
    ``[d * (1 - jitter), d]``. A server's ``retry_after_s`` is a floor (never retry sooner than
    asked), bounded by :data:`MAX_RETRY_AFTER_S`.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within [0, 1]")
    delay = min(cap_s, base_s * math.ldexp(1.0, min(attempt, 62)))
    delay -= delay * jitter * rng()
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > delay:
        return min(float(retry_after_s), MAX_RETRY_AFTER_S)
    return delay


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """A ``Retry-After`` header (delta-seconds or HTTP-date) → seconds from ``now_s``, or None."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isascii() and text.isdigit():
        return min(float(int(text)), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    try:
        delta = when.timestamp() - now_s
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the running task that a library call swallowed.

    nats-py waits for its own tasks inside ``except (CancelledError, TimeoutError): pass`` as it
    closes a failed connection (``nats.aio.client.Client._close``), and Python 3.11's
    ``asyncio.wait_for`` can lose a cancellation that arrives as the awaited call fails
    (python/cpython#86296). The request then stays counted (``Task.cancelling()``) while the
    caller sees only the connection error, and a reconnect loop around it retries forever: a
    gateway stop waited on one in the emulated arm64 run. Every reconnect loop calls this in its
    ``except`` before it backs off, and every steady-state loop at the top of each round: a
    nats-py ``fetch`` can also *return* with the cancellation lost (its ``next_msg`` awaits a
    task whose ``wait_for`` hands back the message that arrived with the cancel), and a stop of
    the fleet-rollout test then waited forever on a downlink that went on fetching."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
