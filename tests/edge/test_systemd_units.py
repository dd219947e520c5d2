"""The shipped units and gateway.toml produce exactly the store network the design asks for:
TLS device listeners on the configured interfaces, plain MQTT only on 127.0.0.1 for the gateway,
a hardened gateway unit (systemd-analyze security ≤ 2.5) that may open the on-board UARTs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _units(tmp_path: Path) -> list[Path]:
    edge_bin = Path(sys.executable).with_name("edge")
    out = []
    for unit in ("edge-gateway.service", "edge-mosquitto.service"):
        text = (ROOT / "systemd" / unit).read_text().replace("/opt/edge-gateway/.venv/bin/edge", str(edge_bin))
        text = text.replace("/usr/sbin/mosquitto", shutil.which("mosquitto") or "/usr/sbin/mosquitto")
        (tmp_path / unit).write_text(text)
        out.append(tmp_path / unit)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify_and_the_gateway_is_hardened(tmp_path):
    units = _units(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(units[0])], capture_output=True, text=True, timeout=120
    )
    found = re.search(r"Overall exposure level for edge-gateway\.service: ([0-9.]+)", security.stdout)
    assert found, security.stdout[-2000:] + security.stderr
    assert float(found.group(1)) <= 2.5, found.group(0)


def test_serial_device_access_covers_on_board_uarts():
    text = (ROOT / "systemd" / "edge-gateway.service").read_text()
    for driver in ("ttyUSB", "ttyACM", "ttyAMA", "ttyS"):
        assert f"DeviceAllow=char-{driver} rw" in text
    assert "DevicePolicy=closed" in text
    mosquitto = (ROOT / "systemd" / "edge-mosquitto.service").read_text()
    assert "edge broker prime" in mosquitto and "--pid $MAINPID" in mosquitto


def test_shipped_config_gives_tls_devices_and_a_loopback_gateway(tmp_path, capsys):
    text = (ROOT / "systemd" / "gateway.toml").read_text().replace("/var/lib/edge-gateway", str(tmp_path / "state"))
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    assert main(["config", "check", str(config)]) == 0
    capsys.readouterr()
    assert main(["broker", "conf", "--config", str(config), "--port", "1883"]) == 0
    conf = capsys.readouterr().out
    listeners = re.findall(r"^listener (\d+) (\S+)\n((?:(?!listener ).*\n)*)", conf, re.M)
    table = {(port, host): body for port, host, body in listeners}
    assert set(table) == {("1883", "127.0.0.1"), ("8883", "0.0.0.0"), ("8884", "0.0.0.0")}
    assert "certfile" not in table[("1883", "127.0.0.1")] and "passwd-gateway" in table[("1883", "127.0.0.1")]
    for key in (("8883", "0.0.0.0"), ("8884", "0.0.0.0")):
        body = table[key]
        assert "certfile" in body and "keyfile" in body and "use_username_as_clientid true" in body
    assert "require_certificate true" in table[("8884", "0.0.0.0")] and "crlfile" in table[("8884", "0.0.0.0")]
    assert "use_identity_as_username true" in table[("8884", "0.0.0.0")]
    for line in (
        "autosave_on_changes true",
        "autosave_interval 10000",
        "memory_limit",
        "max_queued_messages",
        "max_inflight_messages 1000",
        "persistence true",
    ):
        assert line in conf
    key = tmp_path / "state" / "pki" / "server.key"
    assert (
        key.stat().st_mode & 0o777 == 0o600 and (tmp_path / "state" / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    )


def test_config_check_refuses_plaintext_on_the_lan_unless_allowed(tmp_path, capsys):
    base = f'[store]\nid = "s1"\nstate_dir = "{tmp_path}"\n'
    cases = {  # 127.0.0.2 stands for the store LAN here, as in every test of this package
        "mqtt": ('[broker]\nplaintext_hosts = ["127.0.0.2"]\n', ""),
        "http": ('[http]\nhost = "127.0.0.2"\n[tls]\nhttp = false\n', "[broker]\n"),
    }
    for name, (extra, section) in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(base + extra)
        assert main(["config", "check", str(path)]) == 1
        err = capsys.readouterr().err
        assert "plaintext listener on 127.0.0.2" in err and "allow_plaintext_lan" in err
        path.write_text(base + extra + section + "allow_plaintext_lan = true\n")
        assert main(["config", "check", str(path)]) == 0
        assert "warning:" in capsys.readouterr().err
    path = tmp_path / "remote-broker.toml"
    path.write_text(base + '[mqtt]\nmode = "external"\nurl = "mqtt://127.0.0.2:1883"\n')
    assert main(["config", "check", str(path)]) == 1
    assert "mqtt.url: the gateway connects to the broker only on its own plain listener" in capsys.readouterr().err
    path = tmp_path / "loopback.toml"
    path.write_text(base + '[broker]\nplaintext_hosts = ["127.0.0.1"]\n')
    assert main(["config", "check", str(path)]) == 0
