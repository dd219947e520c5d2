"""Start real programs for integration tests: on 127.0.0.1, a free port, stopped by PID.

Never rely on a broker or database already running on its standard port: a fresh CI machine
has none, and a developer's may be configured differently.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.broker import free_port
from edge.broker import wait_for_port as _wait_for_port

from .emulation import scaled

__all__ = ["Service", "free_port", "mosquitto", "wait_for_port", "require_program"]


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait for a test service on 127.0.0.1:``port`` (the gateway's own wait, with a test default)."""
    _wait_for_port("127.0.0.1", port, scaled(timeout), proc)


def require_program(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed (make test installs it)")
    return path


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(argv: Sequence[str], port: int, log: Path) -> Service:
    with open(log, "ab") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Service(process, port)


@contextmanager
def mosquitto(conf_text: str, directory: Path, port: int) -> Iterator[Service]:
    """A real Mosquitto with ``conf_text`` (which must listen on 127.0.0.1:``port``)."""
    binary = require_program("mosquitto")
    conf = directory / f"mosquitto-{port}.conf"
    conf.write_text(conf_text)
    service = start([binary, "-c", str(conf)], port, directory / f"mosquitto-{port}.log")
    try:
        yield service
    finally:
        service.stop()
