"""Certificate renewal while the clock jumps ±30 days (Debian's libfaketime), devices staying
connected: the gateway runs as its own `edge run` process under libfaketime, the broker (real
Mosquitto, real clock) as the systemd layout has it, devices with the real clock.

1. The gateway starts with the real time; a kiosk (paho, MQTT over TLS) and an HTTPS client
   connect with their bundle.
2. Its clock jumps +30 days while it runs (``FAKETIME_TIMESTAMP_FILE``): the 40-day certificate
   is past 2/3 of its life, so it is renewed — Mosquitto reloads (SIGHUP), the HTTPS context
   loads the new chain; new handshakes see the new certificate, the kiosk's session stays.
3. The gateway restarts under ``faketime -f -30d`` (30 days behind the devices, 60 behind the
   certificate it issued): the clock is before that certificate's issue, so it renews at once.
   The kiosk is still connected and every event it sent is stored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from cryptography import x509
from netkit import LAN, Session, ssl_context, tls_config, wait_for
from support.faketime import skip_unless_sleep_works
from support.services import free_port, require_program
from test_broker_persistence import Broker, _broker_conf

from edge import schema
from edge.provision import provision

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _served(host: str, port: int, bundle) -> x509.Certificate:
    import socket

    with socket.create_connection((host, port), timeout=5) as raw:
        with ssl_context(bundle).wrap_socket(raw, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _served_serial(host: str, port: int, bundle) -> int:
    return _served(host, port, bundle).serial_number


def _gateway(toml, log, env_extra: dict[str, str], wrapper: list[str]) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    # its own process group: the faketime wrapper forks and does not pass SIGTERM on, so the
    # gateway is stopped through the group (see _stop), never left running after the test
    return subprocess.Popen(
        [*wrapper, sys.executable, "-m", "edge.cli", "run", "--config", str(toml)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(30)


def _ready(url: str, bundle, proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gateway exited"
        try:
            if httpx.get(f"{url}/readyz", verify=ssl_context(bundle), timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("gateway not ready")


def test_renewal_across_clock_jumps_keeps_devices_connected(tmp_path, capsys):
    faketime = require_program("faketime")
    lib = skip_unless_sleep_works()
    port, http_port = free_port(), free_port(LAN)
    config = tls_config(
        tmp_path / "state",
        mqtt={"mode": "external", "url": f"mqtt://127.0.0.1:{port}"},
        broker={"mqtts_port": free_port(LAN), "mtls_port": free_port(LAN)},
        http={"port": http_port},
        features={"enabled": []},
        tls={"server_cert_days": 40, "check_interval_s": 0.5},
    )
    toml, conf = _broker_conf(config, port, capsys, tmp_path)
    broker = Broker(conf, port, toml, tmp_path)
    broker.start()
    kiosk = provision(config, "kiosk", "k-clock")
    ops = provision(config, "ops", "ops-clock")
    mqtts_port = int(kiosk["urls"]["mqtts"].rsplit(":", 1)[1])
    https = kiosk["urls"]["https"]
    offset = tmp_path / "faketime-offset"
    offset.write_text("+0d\n")
    log = open(tmp_path / "gateway.log", "ab")
    device = Session(kiosk, reconnect=True)
    sent: list[str] = []

    def send(tag: str) -> None:
        for i in range(5):
            message_id = f"{tag}-{i}"
            assert (
                device.publish(
                    kiosk["topics"]["events"], json.dumps({"messageId": message_id, "event": "Cart Viewed"}).encode()
                )
                == 0
            )
            sent.append(message_id)

    gateway = _gateway(
        toml, log, {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1"}, []
    )
    try:
        _ready(https, kiosk, gateway)
        assert not device.start().is_failure
        send("real")
        first = _served_serial(LAN, mqtts_port, kiosk)
        assert _served_serial(LAN, http_port, kiosk) == first

        offset.write_text("+30d\n")  # the box's clock jumps forward while the gateway runs
        wait_for(lambda: _served_serial(LAN, mqtts_port, kiosk) != first, 30)
        second = _served_serial(LAN, mqtts_port, kiosk)
        wait_for(lambda: _served_serial(LAN, http_port, kiosk) == second, 10)
        assert device.connected.is_set() and device.disconnects == []
        send("plus30")
        ready = httpx.get(f"{https}/readyz", verify=ssl_context(kiosk)).json()
        assert ready["ready"] and "tls_expiry" not in ready["warnings"]
        metrics = httpx.get(
            f"{https}/metrics", verify=ssl_context(ops), headers={"Authorization": f"Bearer {ops['http_token']}"}
        ).text
        line = next(x for x in metrics.splitlines() if x.startswith("edge_tls_server_cert_not_after_seconds "))
        assert float(line.split()[1]) == _served(LAN, mqtts_port, kiosk).not_valid_after_utc.timestamp()
        assert "edge_tls_server_cert_renewals_total 1.0" in metrics

        assert _stop(gateway) == 0
        gateway = _gateway(toml, log, {}, [faketime, "-f", "-30d"])  # back 30 days behind the devices
        _ready(https, kiosk, gateway)
        third = _served_serial(LAN, mqtts_port, kiosk)
        assert third not in (first, second)
        assert _served_serial(LAN, http_port, kiosk) == third
        assert device.connected.is_set() and device.disconnects == []  # the broker kept the session throughout
        send("minus30")
        with schema.open_journal(config) as journal:
            wait_for(lambda: all(journal.get(m) for m in sent), 30)
    finally:
        device.stop()
        if gateway.poll() is None:
            _stop(gateway)
        log.close()
        broker.stop()
    text = (tmp_path / "gateway.log").read_text()
    assert "renewed the server certificate" in text
    assert "PRIVATE KEY" not in text and kiosk["mqtt_password"] not in text
