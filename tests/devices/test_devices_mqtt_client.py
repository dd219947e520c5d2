"""The device MQTT helper against a real Mosquitto with per-device credentials and ACL."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.paho import close_client
from support.services import free_port, mosquitto

from devices.errors import DeviceUnavailable
from devices.mqtt_client import DeviceClient, DeviceIdentity
from edge.registry import GATEWAY_USER, acl_lines, mosquitto_hash

pytestmark = pytest.mark.integration

STORE = "s1"


def _conf(tmp_path: Path, port: int) -> str:
    (tmp_path / "passwd").write_text(
        f"{GATEWAY_USER}:{mosquitto_hash('gw-secret')}\nkiosk-1:{mosquitto_hash('k1-secret')}\n"
    )
    (tmp_path / "acl").write_text("\n".join(acl_lines(STORE, [("kiosk-1", "kiosk")])) + "\n")
    return (
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        f"acl_file {tmp_path / 'acl'}\npersistence false\n"
    )


class FakeGateway:
    """A paho client as the gateway: records events and status, answers decide requests."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, Any, bool]] = []
        self.got = threading.Condition()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw", protocol=mqtt.MQTTv5)
        client.username_pw_set(GATEWAY_USER, "gw-secret")
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        client.subscribe(f"retail/v1/{STORE}/#", qos=1)
        client.loop_start()
        self.client = client

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/decide"):
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = msg.properties.CorrelationData
            request = json.loads(msg.payload)
            reply = {"decisionId": "d-1", "arm": "treatment", "echo": request}
            client.publish(msg.properties.ResponseTopic, json.dumps(reply), qos=1, properties=props)
        with self.got:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))
            self.got.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        with self.got:
            assert self.got.wait_for(lambda: predicate(self.messages), timeout)

    def stop(self) -> None:
        close_client(self.client)


def test_device_client_round_trip(tmp_path: Path) -> None:
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):
        gateway = FakeGateway(port)
        identity = DeviceIdentity(STORE, "kiosk", "kiosk-1")
        base = identity.base

        async def main() -> dict[str, Any]:
            async with DeviceClient(identity, "127.0.0.1", port, "k1-secret") as kiosk:
                ids = await kiosk.publish_events({"event": "Product Viewed", "properties": {"sku": "A1"}})
                batch_ids = await kiosk.publish_events([{"event": "Cart Viewed"}, {"event": "Cart Viewed"}])
                reply = await kiosk.decide({"placement": "kiosk_home"})
                gateway.client.publish(f"{base}/offers", json.dumps({"offerId": "o1"}), qos=1, retain=True)
                offers = kiosk.offers()
                offer = await asyncio.wait_for(offers.__anext__(), 5)
                await offers.aclose()
                return {"ids": ids, "batch_ids": batch_ids, "reply": reply, "offer": offer}

        result = asyncio.run(main())
        gateway.wait_for(lambda m: any(t.endswith("/status") and p == {"status": "offline"} for t, p, _ in m))
        gateway.stop()
    topics = [t for t, _, _ in gateway.messages]
    assert topics[0] == f"{base}/status" and gateway.messages[0][1] == {"status": "online"}
    events = [p for t, p, _ in gateway.messages if t == f"{base}/events"]
    assert events[0]["messageId"] == result["ids"][0] and events[0]["properties"] == {"sku": "A1"}
    assert [e["messageId"] for e in events[1]] == result["batch_ids"]
    assert all(len(i) == 36 and i[14] == "7" for i in result["ids"] + result["batch_ids"])  # UUIDv7
    assert result["reply"] == {"decisionId": "d-1", "arm": "treatment", "echo": {"placement": "kiosk_home"}}
    assert result["offer"].payload == {"offerId": "o1"} and result["offer"].topic == f"{base}/offers"


def test_wrong_password_is_refused(tmp_path: Path) -> None:
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):

        async def main() -> None:
            async with DeviceClient(DeviceIdentity(STORE, "kiosk", "kiosk-1"), "127.0.0.1", port, "wrong"):
                pass

        with pytest.raises(DeviceUnavailable, match="refused"):
            asyncio.run(main())


def test_last_will_marks_a_vanished_device_offline(tmp_path: Path) -> None:
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):
        gateway = FakeGateway(port)
        identity = DeviceIdentity(STORE, "kiosk", "kiosk-1")

        async def main() -> None:
            client = DeviceClient(identity, "127.0.0.1", port, "k1-secret", keepalive_s=1)
            await client.__aenter__()
            assert client._supervisor is not None and client._connection is not None
            client._supervisor.cancel()  # the kiosk loses power: no DISCONNECT is sent, no reconnect
            client._connection.abort()

        asyncio.run(main())
        gateway.wait_for(lambda m: [p for t, p, _ in m if t.endswith("/status")][-1:] == [{"status": "offline"}], 10)
        gateway.stop()


def test_a_stop_that_lands_while_the_client_closes_is_not_lost(tmp_path: Path) -> None:
    """``_shutdown`` awaits the cancelled supervisor: a cancellation of the closing task that
    arrives then raises the same CancelledError, which must not be taken for the supervisor's."""
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):
        gateway = FakeGateway(port)
        identity = DeviceIdentity(STORE, "kiosk", "kiosk-1")
        clients: list[DeviceClient] = []

        async def kiosk() -> str:
            me = asyncio.current_task()
            assert me is not None
            client = DeviceClient(identity, "127.0.0.1", port, "k1-secret", receipts=False)
            clients.append(client)
            async with client:
                assert client._supervisor is not None
                client._supervisor.add_done_callback(lambda _: me.cancel())  # the stop, mid-close
            return "went on after its stop"

        async def main() -> None:
            task = asyncio.create_task(kiosk())
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done and task.cancelled(), task.result() if done else "still running"

        asyncio.run(main())
        (client,) = clients
        assert client._connection is None and client._supervisor is None  # closed before the re-raise
        gateway.wait_for(lambda m: [p for t, p, _ in m if t.endswith("/status")][-1:] == [{"status": "offline"}])
        gateway.stop()


def test_clients_closed_in_a_finally_of_a_stopped_task_all_close(tmp_path: Path) -> None:
    """The simulator closes its clients one after another in a ``finally`` while its stop
    propagates: that stop is not a new one, so each ``__aexit__`` returns and all of them close."""
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):
        identity = DeviceIdentity(STORE, "kiosk", "kiosk-1")
        clients = [DeviceClient(identity, "127.0.0.1", port, "k1-secret", receipts=False) for _ in range(2)]
        running = asyncio.Event()

        async def simulator() -> None:
            for client in clients:
                await client.__aenter__()
            running.set()
            try:
                await asyncio.sleep(3600)
            finally:
                for client in clients:
                    await client.__aexit__(None, None, None)

        async def main() -> None:
            task = asyncio.create_task(simulator())
            async with asyncio.timeout(10):
                await running.wait()
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done and task.cancelled()

        asyncio.run(main())
        assert [(c._connection, c._supervisor) for c in clients] == [(None, None)] * 2
