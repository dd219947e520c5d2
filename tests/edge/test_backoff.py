"""The pure backoff function and Retry-After parsing (Hypothesis)."""

from __future__ import annotations

import ast
import asyncio
import math
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.backoff import MAX_RETRY_AFTER_S, backoff_delay, parse_retry_after

unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.01, max_value=600),
    jitter=st.floats(min_value=0, max_value=1),
    r=unit,
)
def test_delay_is_within_the_jittered_exponential_envelope(attempt, base, cap, jitter, r):
    delay = backoff_delay(attempt, base_s=base, cap_s=cap, jitter=jitter, rng=lambda: r)
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9
    assert delay >= 0 and math.isfinite(delay)


@given(attempt=st.integers(0, 50), r=unit)
def test_delay_grows_until_the_cap(attempt, r):
    a = backoff_delay(attempt, base_s=0.5, cap_s=60, jitter=0, rng=lambda: r)
    b = backoff_delay(attempt + 1, base_s=0.5, cap_s=60, jitter=0, rng=lambda: r)
    assert b >= a and b <= 60


@given(attempt=st.integers(0, 100), retry_after=st.floats(min_value=0, max_value=1e9), r=unit)
def test_retry_after_is_a_floor_but_bounded(attempt, retry_after, r):
    delay = backoff_delay(attempt, retry_after_s=retry_after, rng=lambda: r)
    assert delay >= min(retry_after, MAX_RETRY_AFTER_S) - 1e-9
    assert delay <= max(60.0, MAX_RETRY_AFTER_S)


@given(retry_after=st.sampled_from([math.nan, math.inf, -math.inf, -5.0]))
def test_nonsense_retry_after_is_ignored(retry_after):
    assert backoff_delay(3, retry_after_s=retry_after, jitter=0) == 4.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        backoff_delay(-1)
    with pytest.raises(ValueError):
        backoff_delay(0, jitter=1.5)


def test_retry_after_forms():
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    later = format_datetime(datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now) == 30.0
    earlier = format_datetime(datetime(2026, 11, 22, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("99999999", now) == MAX_RETRY_AFTER_S
    for bad in (None, "", "soon", "-1", "1.5", "Wed, 99 Foo 2026", "٣"):
        assert parse_retry_after(bad, now) is None


@given(st.text(max_size=80), st.floats(min_value=0, max_value=4e9))
def test_fuzz_retry_after_never_raises(text, now):
    value = parse_retry_after(text, now)
    assert value is None or 0.0 <= value <= MAX_RETRY_AFTER_S


def _cancelled_as_its_event_is_set(wait: str) -> bool:
    """Set the awaited event and cancel the waiting task in the same loop round; True when the
    task ends cancelled, False when it returns as if nothing had been asked of it."""

    async def main() -> bool:
        event = asyncio.Event()

        async def body() -> None:
            if wait == "wait_for":
                await asyncio.wait_for(event.wait(), 5)
            else:
                async with asyncio.timeout(5):
                    await event.wait()

        task = asyncio.create_task(body())
        await asyncio.sleep(0.01)
        event.set()
        task.cancel()
        await asyncio.wait({task})
        return task.cancelled()

    return asyncio.run(main())


def test_a_timeout_block_never_loses_a_cancellation_where_wait_for_can() -> None:
    """Why the gateway's packages hold no ``asyncio.wait_for``: on Python 3.11 it returns the
    awaited result when the cancellation arrives in the same round as that result
    (python/cpython#86296, fixed by 3.12's rewrite), and a loop around it then never stops."""
    assert _cancelled_as_its_event_is_set("timeout")
    assert _cancelled_as_its_event_is_set("wait_for") is (sys.version_info >= (3, 12))


def test_no_package_awaits_through_wait_for() -> None:
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("edge", "devices", "sync", "models"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for" and isinstance(node.value, ast.Name):
                    if node.value.id == "asyncio":
                        found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, f"use `async with asyncio.timeout(…)` instead of asyncio.wait_for: {found}"
