"""The systemd units are valid (systemd-analyze verify) and keep their promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("edge-gateway.service", "edge-mosquitto.service")


def test_gateway_unit_is_notify_hardened_and_restarting():
    text = (ROOT / "systemd" / "edge-gateway.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "User=edge",
        "StateDirectory=edge-gateway",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "PrivateTmp=yes",
    ):
        assert line in text, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify(tmp_path):
    edge_bin = Path(sys.executable).with_name("edge")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    for unit in UNITS:  # point ExecStart at binaries that exist on this machine
        text = (ROOT / "systemd" / unit).read_text()
        text = text.replace("/opt/edge-gateway/.venv/bin/edge", str(edge_bin)).replace("/usr/sbin/mosquitto", mosquitto)
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(tmp_path / u) for u in UNITS]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "edge-" in line and "Failed to" not in line.split(":")[0]
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [p for p in problems if "Unknown" in p or "Invalid" in p or "Ignoring" in p], problems


def test_watchdog_and_ready_use_the_notify_socket(tmp_path, monkeypatch):
    import socket

    from edge.notify import notify, watchdog_interval

    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify("READY=1")
    assert server.recv(100) == b"READY=1"
    assert watchdog_interval() == 15.0
    server.close()
