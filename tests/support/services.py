"""Start real programs for integration tests: on 127.0.0.1, a free port, stopped by PID.

Never rely on a broker or database already running on its standard port: a fresh CI machine
has none, and a developer's may be configured differently.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Service", "free_port", "mosquitto", "wait_for_port", "require_program"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def require_program(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
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
                self.process.wait(10)
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
