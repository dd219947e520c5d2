"""A small typed MQTT client for store devices (kiosks, displays, tablets, the simulator).

paho-mqtt 2.x (callback API v2, MQTT 5, QoS 1) behind an async context manager; the client is
the connection::

    async with DeviceClient(DeviceIdentity("s1", "kiosk", "kiosk-1"), "127.0.0.1", port, password) as kiosk:
        await kiosk.publish_events([{"event": "Product Viewed", "properties": {"sku": "A1"}}])
        reply = await kiosk.decide({"placement": "kiosk_home"})
        async for offer in kiosk.offers():
            ...

Topics follow DESIGN.md: ``retail/v1/{storeId}/{kind}/{deviceId}/events|status|decide|offers``;
decisions come back on ``…/responses/{uuid}`` matched by MQTT 5 correlation data. Every event
gets a UUIDv7 ``messageId`` if it has none, so a QoS 1 redelivery is de-duplicated. The retained
``…/status`` is ``{"status": "online"}`` while connected and the Last Will sets ``offline``.
paho's own network thread does the I/O; results cross into asyncio with
``call_soon_threadsafe``. Vendor types stop here: :class:`Offer` messages are plain dataclasses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.errors import DeviceUnavailable
from edge.ids import uuid7

__all__ = ["DeviceClient", "DeviceIdentity", "Offer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    store_id: str
    kind: str
    device_id: str

    @property
    def base(self) -> str:
        return f"retail/v1/{self.store_id}/{self.kind}/{self.device_id}"


@dataclass(frozen=True, slots=True)
class Offer:
    """A message from ``…/offers`` (retained for displays)."""

    topic: str
    payload: Any
    retained: bool


class DeviceClient:
    def __init__(
        self,
        identity: DeviceIdentity,
        host: str,
        port: int,
        password: str,
        *,
        username: str | None = None,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        offers_queue: int = 100,
    ) -> None:
        self.identity = identity
        self._host, self._port = host, port
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._published: dict[int, asyncio.Future[None]] = {}
        self._early_acks: set[int] = set()
        self._replies: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._offers: asyncio.Queue[Offer] = asyncio.Queue(offers_queue)
        self.offers_dropped = 0
        self._response_topic = f"{identity.base}/responses/{uuid.uuid4().hex[:12]}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{identity.device_id}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(username or identity.device_id, password)
        client.will_set(f"{identity.base}/status", json.dumps({"status": "offline"}), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connect_done, reason.is_failure, str(reason))

    def _connect_done(self, failed: bool, reason: str) -> None:
        if self._connected is not None and not self._connected.done():
            if failed:
                self._connected.set_exception(DeviceUnavailable(f"broker refused {self.identity.device_id}: {reason}"))
            else:
                self._connected.set_result(None)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.info("device %s disconnected: %s", self.identity.device_id, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._publish_done, mid)

    def _publish_done(self, mid: int) -> None:
        future = self._published.pop(mid, None)
        if future is None:
            self._early_acks.add(mid)  # acknowledged before publish() registered its future
        elif not future.done():
            future.set_result(None)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props else None
        try:
            payload = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = msg.payload.decode("utf-8", errors="replace")
        self._loop.call_soon_threadsafe(self._deliver, msg.topic, payload, bool(msg.retain), correlation)

    def _deliver(self, topic: str, payload: Any, retained: bool, correlation: bytes | None) -> None:
        if topic == self._response_topic:
            future = self._replies.pop(correlation or b"", None)
            if future is not None and not future.done():
                future.set_result(payload if isinstance(payload, dict) else {"error": "bad reply"})
            return
        try:
            self._offers.put_nowait(Offer(topic, payload, retained))
        except asyncio.QueueFull:
            self.offers_dropped += 1
            log.warning("device %s: offer queue full, %d dropped", self.identity.device_id, self.offers_dropped)

    # -- connection ------------------------------------------------------------------------
    async def __aenter__(self) -> DeviceClient:
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        try:
            await self._loop.run_in_executor(
                None, lambda: self._client.connect(self._host, self._port, self._keepalive_s, clean_start=True)
            )
        except OSError as exc:
            raise DeviceUnavailable(f"cannot reach the broker at {self._host}:{self._port}: {exc}") from exc
        self._client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._connected), self._timeout_s)
            await self._subscribe(self._response_topic)
            await self.set_status("online")
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._client.is_connected():
                await self.set_status("offline")
        except (DeviceUnavailable, TimeoutError):
            pass
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._client.disconnect()
        assert self._loop is not None
        await self._loop.run_in_executor(None, self._client.loop_stop)
        for future in [*self._published.values(), *self._replies.values()]:
            if not future.done():
                future.cancel()

    async def _subscribe(self, topic: str) -> None:
        result, _ = self._client.subscribe(topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise DeviceUnavailable(f"subscribe to {topic} failed: {mqtt.error_string(result)}")

    # -- publishing ------------------------------------------------------------------------
    async def _publish(self, topic: str, payload: str, *, retain: bool = False, properties: Properties | None = None) -> None:
        assert self._loop is not None
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeviceUnavailable(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if info.mid in self._early_acks:
            self._early_acks.discard(info.mid)
            return
        future = self._loop.create_future()
        self._published[info.mid] = future
        try:
            await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            self._published.pop(info.mid, None)
            raise DeviceUnavailable(f"no PUBACK for {topic} within {self._timeout_s} s") from None

    async def publish_events(self, events: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[str]:
        """Publish one event or an array (QoS 1, returns after PUBACK); returns their messageIds."""
        batch = [events] if isinstance(events, Mapping) else list(events)
        prepared = [{"messageId": uuid7(), "type": "track", **event} for event in batch]
        body: Any = prepared[0] if isinstance(events, Mapping) else prepared
        await self._publish(f"{self.identity.base}/events", json.dumps(body, separators=(",", ":")))
        return [e["messageId"] for e in prepared]

    async def set_status(self, status: str, **details: Any) -> None:
        await self._publish(f"{self.identity.base}/status", json.dumps({"status": status, **details}), retain=True)

    async def decide(self, request: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """Ask the gateway for a decision; waits for the reply on this client's response topic."""
        assert self._loop is not None
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._replies[correlation] = future
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self._response_topic
        props.CorrelationData = correlation
        try:
            await self._publish(f"{self.identity.base}/decide", json.dumps(dict(request)), properties=props)
            return await asyncio.wait_for(future, timeout_s or self._timeout_s)
        except TimeoutError:
            raise DeviceUnavailable("no decision reply in time") from None
        finally:
            self._replies.pop(correlation, None)

    async def offers(self) -> AsyncIterator[Offer]:
        """Subscribe to ``…/offers`` and yield what arrives (the retained offer first)."""
        await self._subscribe(f"{self.identity.base}/offers")
        while True:
            yield await self._offers.get()
