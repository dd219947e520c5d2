"""Debian's libfaketime for the tests that run a real process with a moved clock.

Debian 12's libfaketime 0.9.10 on arm64 (seen under qemu-user, Cortex-A72) wraps the
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` that CPython 3.11's ``time.sleep`` calls so
that it fails with EINVAL, at any offset (+0d too); a relative ``clock_nanosleep``, lock and
queue timeouts and coreutils' ``sleep`` work (a ``ctypes`` probe in the emulated guest, and on
x86-64 every one of them works). A gateway started under it cannot wait for its managed broker
or linger for a group commit, so a test of it there says nothing about the gateway.
libfaketime's own tracker has this family of aarch64 timed-wait faults (wolfcw/libfaketime#197,
#420). :func:`skip_unless_sleep_works` probes first and skips naming the error.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from .emulation import scaled

__all__ = ["libfaketime", "skip_unless_sleep_works", "sleep_fault"]


def libfaketime() -> str:
    """The preload library of Debian's ``faketime`` package."""
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert libs, "libfaketime (Debian package faketime) is missing"
    return libs[0]


def sleep_fault(lib: str) -> str | None:
    """What Python's ``time.sleep`` says under ``lib``, or None when it sleeps."""
    probe = subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(0.01)"],
        env={**os.environ, "LD_PRELOAD": lib, "FAKETIME": "+0d"},
        capture_output=True,
        text=True,
        timeout=scaled(10),
    )
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["no output"])[-1]


def skip_unless_sleep_works() -> str:
    """The library's path; skips the test where it breaks ``time.sleep`` (the fault above)."""
    lib = libfaketime()
    fault = sleep_fault(lib)
    if fault:
        pytest.skip(f"{lib} breaks Python's time.sleep on {os.uname().machine}: {fault}")
    return lib
