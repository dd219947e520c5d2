"""The gateway's short broker sessions end cleanly: a DISCONNECT the real Mosquitto logs as
such, and no socket left behind for the garbage collector.

``edge broker prime`` (the systemd unit's ExecStartPost) and ``kick`` (after ``edge devices
remove``) each open one paho session on the gateway's loopback listener and end it. Stopping
paho's network thread right after ``disconnect()`` can end it before the DISCONNECT is written:
the broker then logs "closed its connection" (no DISCONNECT) instead of "disconnected", and the
socket is closed by the collector, as an unraisable ResourceWarning in some later test.
"""

from __future__ import annotations

import gc
import warnings

import pytest
from netkit import session, wait_for
from test_broker_persistence import Broker, _broker_conf, _external

from edge.broker import broker_dir, gateway_password
from edge.errors import BrokerError
from edge.provision import provision
from edge.sessions import kick, prime_gateway_session

pytestmark = pytest.mark.integration


def _no_unclosed_socket() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def test_prime_and_kick_end_their_sessions_with_a_disconnect(tmp_path, capsys):
    config, port = _external(tmp_path)
    toml, conf = _broker_conf(config, port, capsys, tmp_path)
    broker = Broker(conf, port, toml, tmp_path)
    broker.start()  # runs `edge broker prime`: the gateway's session is created, then ended
    try:
        log = broker_dir(config.store.state_dir) / "mosquitto.log"
        gateway_id = f"edge-gateway-{config.store.id}"
        password = gateway_password(config.store.state_dir)
        # primed again: the session is present now, so this one only connects and leaves
        assert prime_gateway_session("127.0.0.1", port, password, gateway_id, config.store.id, 3600) is False
        bundle = provision(config, "kiosk", "k-kicked")
        with session(bundle) as device:
            kick("127.0.0.1", port, password, "k-kicked")
            wait_for(lambda: device.disconnects)  # its session was taken over and ended
        wait_for(lambda: log.read_text().count(f"Client {gateway_id} disconnected") >= 2)
        text = log.read_text()
        assert f"Client {gateway_id} closed its connection" not in text
        assert "Client k-kicked disconnected" in text  # the kick's own clean end, not a drop
        _no_unclosed_socket()
    finally:
        broker.stop()


def test_a_refused_session_leaves_no_socket(tmp_path, capsys):
    config, port = _external(tmp_path)
    toml, conf = _broker_conf(config, port, capsys, tmp_path)
    broker = Broker(conf, port, toml, tmp_path)
    broker.start()
    try:
        with pytest.raises(BrokerError, match="refused the gateway"):
            prime_gateway_session("127.0.0.1", port, "not-the-password", "edge-gateway-x", "x", 60)
        _no_unclosed_socket()
    finally:
        broker.stop()
