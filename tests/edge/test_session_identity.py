"""Session identity: a device cannot take the gateway's (or another device's) MQTT session.

A kiosk connects over TLS with the gateway's client id ``edge-gateway-s1`` (and once more on the
plaintext loopback listener): the broker binds its client id to its username, so the gateway's
session is untouched — it stays connected, /readyz stays ready, and every event another device
had acknowledged meanwhile is in the journal. The kiosk cannot log in on the gateway's listener.
"""

from __future__ import annotations

import json
import threading

import httpx
import paho.mqtt.client as mqtt
import pytest
from netkit import LAN, Session, session, ssl_context, tls_config, wait_for
from support.gateway import running_gateway
from support.paho import close_client

from edge import schema
from edge.provision import provision

pytestmark = pytest.mark.integration


def test_client_id_takeover_of_the_gateway_fails(tmp_path):
    config = tls_config(tmp_path / "state", broker={"plaintext_hosts": ["127.0.0.1"], "plaintext_port": 0})
    with running_gateway(config) as handle:
        kiosk = provision(config, "kiosk", "k1")
        other = provision(config, "pos", "p1")
        link = handle.gateway.context.publisher
        drops: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                if not link.connected.is_set():
                    drops.append(1)
                watching.wait(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        gateway_id = f"edge-gateway-{config.store.id}"
        acked: list[str] = []
        with session(other) as pos:
            for attempt in range(3):
                hijacker = Session(kiosk, client_id=gateway_id, clean_start=False)
                assert not hijacker.start().is_failure  # accepted — as "k1", not as the gateway
                for i in range(5):
                    message_id = f"during-hijack-{attempt}-{i}"
                    if (
                        pos.publish(
                            other["topics"]["events"],
                            json.dumps({"messageId": message_id, "event": "Cart Viewed"}).encode(),
                        )
                        == 0
                    ):
                        acked.append(message_id)
                hijacker.stop()
            # the same on the loopback plaintext device listener
            host, port = handle.broker
            plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gateway_id, protocol=mqtt.MQTTv5)
            plain.username_pw_set(kiosk["mqtt_username"], kiosk["mqtt_password"])
            plain.connect(host, port)
            plain.loop_start()
            for i in range(5):
                message_id = f"during-plain-hijack-{i}"
                if (
                    pos.publish(
                        other["topics"]["events"],
                        json.dumps({"messageId": message_id, "event": "Cart Viewed"}).encode(),
                    )
                    == 0
                ):
                    acked.append(message_id)
            close_client(plain)
        # the gateway's own listener does not know the kiosk at all
        gw_host, gw_port = handle.gateway.broker_address
        refused = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=gateway_id, protocol=mqtt.MQTTv5)
        refused.username_pw_set(kiosk["mqtt_username"], kiosk["mqtt_password"])
        answers: list = []
        refused.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
        refused.connect(gw_host, gw_port)
        refused.loop_start()
        wait_for(lambda: answers)
        close_client(refused, disconnect=False)  # refused at CONNACK: paho leaves its socket open
        assert answers[0].is_failure and "authori" in str(answers[0]).lower()
        watching.set()
        watcher.join()
        assert drops == [], "the gateway lost its broker connection"
        assert len(acked) == 20
        with schema.open_journal(config) as journal:
            wait_for(lambda: all(journal.get(m) is not None for m in acked))
        ready = httpx.get(f"{handle.http}/readyz", verify=ssl_context(kiosk))
        assert ready.status_code == 200 and ready.json()["checks"]["broker"] is True
        log = (config.store.state_dir / "broker" / "mosquitto.log").read_text()
        assert f"as {gateway_id}" in log and "as k1" in log  # the kiosk ran under its own id
        assert f"Client {gateway_id} already connected" not in log
        assert LAN in kiosk["urls"]["mqtts"]


def test_a_device_cannot_take_another_devices_session(tmp_path):
    config = tls_config(tmp_path / "state")
    with running_gateway(config):
        kiosk = provision(config, "kiosk", "k1")
        pos = provision(config, "pos", "p1")
        with session(pos) as victim:
            thief = Session(kiosk, client_id="p1")
            assert not thief.start().is_failure
            assert victim.publish(pos["topics"]["events"], b'{"messageId": "still-mine", "event": "Cart Viewed"}') == 0
            thief.stop()
            assert victim.connected.is_set() and victim.disconnects == []
        with schema.open_journal(config) as journal:
            wait_for(lambda: journal.get("still-mine") is not None)
