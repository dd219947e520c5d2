"""`make test-arm64`'s switches (tests/support/emulation.py): only EDGE_EMULATED=1 skips, only timeouts stretch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.emulation import scaled

ROOT = Path(__file__).resolve().parents[1]
SPEED_TEST = "tests/models/test_models_simulate.py::test_simulator_speed_2000_customers_60_days_2000_skus"


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_EMULATED", "EDGE_TIME_SCALE")}
    env.update(values)
    return env


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )


def test_wallclock_tests_skip_with_the_reason_only_when_emulated() -> None:
    emulated = _pytest(SPEED_TEST, EDGE_EMULATED="1", EDGE_TIME_SCALE="15")
    assert emulated.returncode == 0, emulated.stdout[-2000:]
    assert "1 skipped" in emulated.stdout and "EDGE_EMULATED=1" in emulated.stdout, emulated.stdout
    assert "emulated: yes (EDGE_EMULATED), test timeouts x15" in emulated.stdout
    # any other value is not emulation: the test is collected and runs (it is not deselected, not skipped)
    native = _pytest("--collect-only", SPEED_TEST, EDGE_EMULATED="0")
    assert "1 test collected" in native.stdout and "emulated: no" in native.stdout, native.stdout


def _helpers(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        # the project first: tests/edge (the mirror of edge/, no __init__) must not shadow the package
        cwd=ROOT,
        env=_env(PYTHONPATH=str(ROOT / "tests"), **env),
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )


def test_helper_timeouts_scale_by_the_factor_and_a_bad_factor_is_named() -> None:
    probe = (
        "import time\nfrom support.emulation import scaled\nfrom support.gateway import wait_until\n"
        "print(scaled(10))\nt = time.monotonic()\n"
        "try:\n    wait_until(lambda: False, timeout=0.1)\nexcept TimeoutError as e:\n"
        "    print(round(time.monotonic() - t, 1), e)\n"
    )
    native = _helpers(probe)
    assert native.returncode == 0, native.stderr
    lines = native.stdout.split("\n")
    assert lines[0] == "10.0" and 0.1 <= float(lines[1].split()[0]) < 0.5 and "within 0.1 s" in lines[1], lines
    stretched = _helpers(probe, EDGE_TIME_SCALE="5")
    lines = stretched.stdout.split("\n")
    assert lines[0] == "50.0" and "within 0.5 s" in lines[1] and float(lines[1].split()[0]) >= 0.5, lines
    for bad, why in (("fast", "is not a number"), ("0.5", "must be >= 1")):
        failed = _helpers("import support.emulation", EDGE_TIME_SCALE=bad)
        assert failed.returncode != 0 and f"EDGE_TIME_SCALE={bad!r} {why}" in failed.stderr, failed.stderr
