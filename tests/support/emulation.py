"""The suite under instruction-set emulation (`make test-arm64`): slower clocks, honestly handled.

`.ci/arm64` runs the suite inside an arm64 root file system under qemu-user, which translates
every instruction: CPU-bound code runs about 13x slower than on the host. It sets

- ``EDGE_EMULATED=1``: tests marked ``@pytest.mark.wallclock`` (they assert a speed of this
  machine, e.g. "the simulator builds a 2000-customer store in 30 s") are skipped with the reason
  printed: under emulation they would measure qemu, not the code;
- ``EDGE_TIME_SCALE`` (default 1; ``.ci/arm64`` sets it to 15 unless told otherwise): every
  timeout in the test helpers (wait for a port, a condition, the gateway to get ready, a device to
  connect) is multiplied by it, so a test waits long enough under emulation and exactly as long
  as before natively. A test that only needs more time is never skipped;
- Hypothesis, under emulation only: no per-example deadline and no "too slow" health check (both
  time the emulator; the number of examples, i.e. what is tested, is unchanged).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

__all__ = ["EMULATED", "TIME_SCALE", "scaled", "skip_wallclock_when_emulated"]


def _time_scale() -> float:
    raw = os.environ.get("EDGE_TIME_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"EDGE_TIME_SCALE={raw!r} is not a number (a timeout factor, e.g. 15)") from None
    if not value >= 1:
        raise ValueError(f"EDGE_TIME_SCALE={raw!r} must be >= 1 (it only ever lengthens timeouts)")
    return value


EMULATED = os.environ.get("EDGE_EMULATED", "") == "1"
TIME_SCALE = _time_scale()

WALLCLOCK_REASON = (
    "wallclock: asserts this machine's speed; EDGE_EMULATED=1 (qemu-user translates every "
    "instruction, ~13x slower), so the figure would measure the emulator, not the code"
)

if EMULATED:  # loaded before any test module defines its @settings, so theirs inherit it
    settings.register_profile("emulated", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("emulated")


def scaled(seconds: float) -> float:
    """A test timeout of ``seconds`` on native hardware, stretched by ``EDGE_TIME_SCALE``."""
    return seconds * TIME_SCALE


def skip_wallclock_when_emulated(items: list[pytest.Item]) -> int:
    """Mark every collected ``wallclock`` test as skipped under emulation; return how many."""
    if not EMULATED:
        return 0
    marker = pytest.mark.skip(reason=WALLCLOCK_REASON)
    wallclock = [item for item in items if item.get_closest_marker("wallclock") is not None]
    for item in wallclock:
        item.add_marker(marker)
    return len(wallclock)
