"""End to end through the real gateway and a real Mosquitto: a device publishes an event → the
trigger fires → the retained offer arrives on the display's topic at a paho subscriber (one
connected before, one connecting after: retained), the firing is in the report, and the route
is in /openapi.json."""

from __future__ import annotations

import json
import queue
import threading
import time

import httpx
import paho.mqtt.client as mqtt
from support.gateway import dumps, make_config, register, running_gateway, topic, wait_until
from support.paho import close_client

LIBRARY = """
version = "e2e"
[touchpoints.zones.aisle-5]
display = "display-1"

[[triggers]]
id = "viewed-at-kiosk"
version = 3
audience = "anonymous"
holdout = 0.0
window_minutes = 30
signal = { kind = "event", event = "Product Viewed", where = { channel = "kiosk", "properties.zoneId" = "aisle-5" } }
action = { touchpoint = "display", content = "fixed", offer = { offerId = "snack-week", title = "Snack week", sku = "SKU00007" } }
contact = { per_unit_day = 5, per_visit = 5 }
[[triggers.variants]]
id = "fixed-a"
"""


def _subscriber(host: str, port: int, creds, topic_name: str) -> tuple[mqtt.Client, queue.Queue]:
    got: queue.Queue = queue.Queue()
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"sub-{time.monotonic_ns()}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(creds.mqtt_username, creds.mqtt_password)
    subscribed = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_name, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.on_message = lambda c, u, m: got.put((m.topic, m.retain, json.loads(m.payload)))
    client.connect(host, port)
    client.loop_start()
    assert subscribed.wait(10), "subscriber could not subscribe"
    return client, got


def test_event_fires_trigger_and_display_gets_retained_offer(tmp_path):
    library = tmp_path / "triggers.toml"
    library.write_text(LIBRARY)
    config = make_config(tmp_path / "state", triggers={"path": str(library), "reload_seconds": 0.2})
    creds = register(config, [("kiosk", "kiosk-1"), ("display", "display-1"), ("ops", "ops-1")])
    with running_gateway(config, features=("edge.model", "edge.decisioning", "edge.triggers")) as gw:
        host, port = gw.broker
        offers_topic = topic(gw, creds["display-1"], "offers")
        live, got = _subscriber(host, port, creds["display-1"], offers_topic)
        kiosk = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"kiosk-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        kiosk.username_pw_set(creds["kiosk-1"].mqtt_username, creds["kiosk-1"].mqtt_password)
        kiosk.connect(host, port)
        kiosk.loop_start()
        event = {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "visit-42",
            "messageId": "e2e-view-1",
            "properties": {"sku": "SKU00007", "zoneId": "aisle-5"},
        }
        kiosk.publish(topic(gw, creds["kiosk-1"], "events"), dumps(event), qos=1).wait_for_publish(10)
        name, retained, payload = got.get(timeout=15)
        assert name == offers_topic
        assert set(payload) == {"decisionId", "arm", "trigger", "offers", "issuedAt", "validUntil"}
        assert payload["arm"] == "fixed-a" and payload["trigger"] == {"id": "viewed-at-kiosk", "version": 3}
        assert payload["offers"] == [
            {
                "offerId": "snack-week",
                "sku": "SKU00007",
                "title": "Snack week",
                "score": 1.0,
                "reasons": ["trigger viewed-at-kiosk"],
            }
        ]
        assert payload["validUntil"] > payload["issuedAt"]
        # a display that connects later still gets it: the message is retained
        late, got_late = _subscriber(host, port, creds["display-1"], offers_topic)
        _, retained_late, payload_late = got_late.get(timeout=10)
        assert retained_late and payload_late["decisionId"] == payload["decisionId"]
        for c in (live, late, kiosk):
            close_client(c)

        headers = {"authorization": f"Bearer {creds['ops-1'].http_token}"}

        def fired() -> dict:
            return httpx.get(f"{gw.http}/v1/reports/triggers", headers=headers).json()

        wait_until(lambda: fired()["triggers"], timeout=10)
        row = fired()["triggers"][0]
        assert (row["trigger"], row["version"], row["heldOut"]) == ("viewed-at-kiosk", 3, 0)
        assert row["variants"][0]["fired"] == 1 and row["variants"][0]["delivered"] == 1
        assert httpx.get(f"{gw.http}/v1/reports/triggers").status_code == 401
        spec = httpx.get(f"{gw.http}/openapi.json").json()
        assert "/v1/reports/triggers" in spec["paths"]
        assert "TriggersReport" in json.dumps(spec["paths"]["/v1/reports/triggers"])
