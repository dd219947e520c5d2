"""MQTT ingest against a real Mosquitto: good events land once; bad input is refused and counted."""

from __future__ import annotations

import os
import threading

import httpx
import paho.mqtt.client as mqtt
import pytest
from support.gateway import device_client, dumps, make_config, register, running_gateway, topic, wait_until

from edge import schema
from edge.registry import GATEWAY_USER, Credentials

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path):
    config = make_config(tmp_path / "state")
    creds = register(config, [("kiosk", "k1"), ("kiosk", "k2"), ("ops", "ops1")])
    with running_gateway(config) as handle:
        yield handle, creds


def _journal(handle):
    return schema.open_journal(handle.config)


def _publish(client: mqtt.Client, topic_name: str, payload: bytes) -> int:
    """Publish QoS 1 and return the PUBACK reason code value (0 = accepted by the broker)."""
    done = threading.Event()
    codes: list[int] = []

    def on_publish(_c, _u, _mid, reason, _props):
        codes.append(reason.value)
        done.set()

    client.on_publish = on_publish
    client.publish(topic_name, payload, qos=1).wait_for_publish(10)
    assert done.wait(10)
    return codes[-1]


def test_events_are_journaled_once_with_the_sender_identity(store):
    handle, creds = store
    event = {"messageId": "m-1", "event": "Product Viewed", "properties": {"sku": "A1"}}
    with device_client(handle, creds["k1"]) as client:
        assert _publish(client, topic(handle, creds["k1"], "events"), dumps(event)) == 0
        assert _publish(client, topic(handle, creds["k1"], "events"), dumps([event, event])) == 0
    with _journal(handle) as journal:
        wait_until(lambda: journal.get("m-1") is not None)
        body = journal.get("m-1")
        assert '"deviceId":"k1"' in body and '"storeId":"s1"' in body and '"channel":"kiosk"' in body
        assert journal.stats()["events"] == 1


def _rejected(handle, creds: Credentials) -> str:
    response = httpx.get(f"{handle.http}/metrics", headers={"Authorization": f"Bearer {creds['ops1'].http_token}"})
    assert response.status_code == 200
    return response.text


BAD_INPUTS = {
    "invalid_json": b"{not json",
    "wrong_type": dumps({"event": "Product Viewed", "properties": {"sku": 42}}),
    "too_large": b"[" + b" " * (1024 * 1024) + b"]",
    "identity_mismatch": dumps({"event": "Product Viewed", "deviceId": "k2", "properties": {"sku": "A"}}),
    "unknown_event": dumps({"event": "Teleported", "properties": {}}),
}


def test_bad_input_is_refused_counted_and_dead_lettered(store):
    handle, creds = store
    rng = os.urandom(2048)
    with device_client(handle, creds["k1"]) as client:
        for payload in [*BAD_INPUTS.values(), rng]:
            assert _publish(client, topic(handle, creds["k1"], "events"), payload) == 0
        good = {"messageId": "after-bad", "event": "Cart Viewed"}
        assert _publish(client, topic(handle, creds["k1"], "events"), dumps(good)) == 0
    with _journal(handle) as journal:
        wait_until(lambda: journal.get("after-bad") is not None)
        reasons = journal.stats()["dead_letters"]
    for reason in BAD_INPUTS:
        assert reasons.get(reason, 0) >= 1, reason
    assert sum(reasons.values()) == len(BAD_INPUTS) + 1  # random bytes: invalid_json
    metrics = _rejected(handle, creds)
    for reason in BAD_INPUTS:
        assert f'edge_events_rejected_total{{reason="{reason}",transport="mqtt"}}' in metrics


def test_the_broker_refuses_a_device_writing_another_devices_topic(store):
    handle, creds = store
    event = {"messageId": "spoof-1", "event": "Cart Viewed"}
    with device_client(handle, creds["k1"]) as client:
        code = _publish(client, topic(handle, creds["k2"], "events"), dumps(event))
        assert code == 0x87  # MQTT 5 "Not authorized": refused by the ACL generated from the registry
        code = _publish(client, "retail/v1/s1/kiosk/k1/whatever", dumps(event))
        assert code == 0x87
        assert (
            _publish(client, topic(handle, creds["k1"], "events"), dumps({"messageId": "ok-1", "event": "Cart Viewed"}))
            == 0
        )
    with _journal(handle) as journal:
        wait_until(lambda: journal.get("ok-1") is not None)
        assert journal.get("spoof-1") is None


def test_unknown_topics_that_reach_the_gateway_are_dead_lettered(store):
    handle, creds = store
    password = (handle.config.store.state_dir / "broker" / "gateway.secret").read_text().strip()
    other = Credentials("ops-tool", "ops", GATEWAY_USER, password, "")
    with device_client(handle, other) as client:
        assert _publish(client, "retail/v1/s1/kiosk/k1/nonsense", b"{}") == 0
        assert _publish(client, "retail/v1/s1/nosuchkind/x/events", dumps({"event": "Cart Viewed"})) == 0
    with _journal(handle) as journal:
        wait_until(lambda: journal.stats()["dead_letters"].get("unknown_topic", 0) == 1)
        wait_until(lambda: journal.stats()["dead_letters"].get("unknown_device", 0) == 1)


def test_gateway_status_is_retained_with_a_last_will(store):
    handle, creds = store
    got: list[bytes] = []
    received = threading.Event()
    with device_client(handle, creds["k1"]) as client:
        client.on_message = lambda c, u, m: (got.append(m.payload), received.set())
        client.subscribe("retail/v1/s1/gateway/status", qos=1)
        assert received.wait(10)
    assert b'"status": "online"' in got[0]


def test_device_status_becomes_an_event(store):
    handle, creds = store
    with device_client(handle, creds["k2"]) as client:
        assert _publish(client, topic(handle, creds["k2"], "status"), b'{"status": "online"}') == 0
    with _journal(handle) as journal:
        wait_until(lambda: journal.stats()["by_event"].get("Device Status", 0) == 1)
