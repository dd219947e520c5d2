"""The gateway's MQTT link (paho-mqtt 2.x, MQTT 5): durable ingest, decisions, status.

* One idiom with the device client: :class:`edge.mqttio.Connection` drives paho on the event
  loop (no paho thread); :meth:`MqttLink.run` is the reconnect loop around it. Each message is
  routed, parsed and guarded on the loop, then queued for the journal writer thread.
* Persistent session (``clean_start=False`` with a session expiry) so the broker keeps queuing
  while the gateway is down; ``manual_ack=True`` and the PUBACK is sent only after the journal
  commit (the ack callback runs in the journal writer, in arrival order, and the acks of one
  group commit cross to the loop together). An ack is bound to the connection that received
  the message: after a reconnect the broker redelivers instead (the journal drops the copy).
* One subscription, ``retail/v1/{store}/#`` with MQTT 5 *no local*, so anything a device sends
  reaches the gateway and an unknown topic is refused with a reason instead of vanishing.
  Retain handling 2 (retained copies are never replayed) with *retain as published*, so a live
  retained publish is seen as such: one on ``…/events`` or ``…/decide`` is journaled like any
  event and cleared from the broker at once (an empty retained publish), and counted in
  ``edge_mqtt_retained_cleared_total`` — the broker never keeps event payloads.
* End-to-end receipts: a publish on ``…/events`` carrying the MQTT 5 user property
  ``receipt=1`` (the project's device client sets it) is answered, after its commit, on the
  device's own ``…/receipts`` with ``{"committed": [messageIds], "rejected": [{"messageId",
  "reason"}]}``; the client re-sends until then, so even a broker crash loses nothing.
* Retained gateway status with a Last Will.
* ``…/decide`` requests are answered on the MQTT 5 response topic with the correlation data.

Device identity comes from the topic, which the broker's ACL (generated from the registry) lets
only that device write; the gateway also checks the device is registered with that kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.bus import PublishResult, Source
from edge.component import DecideHandler
from edge.errors import InvalidEvent
from edge.ingest import Busy, Ingestor, _Item
from edge.mqttio import Connection, MqttError
from edge.registry import DeviceRegistry

__all__ = ["MqttLink", "Route", "gateway_subscription", "route"]

log = logging.getLogger(__name__)

LEAVES = frozenset({"events", "status", "decide"})
RECEIPT_PROPERTY = ("receipt", "1")


def gateway_subscription(store_id: str) -> tuple[str, SubscribeOptions]:
    """The gateway's one subscription (also made by :func:`edge.sessions.prime_gateway_session`)."""
    options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)
    return f"retail/v1/{store_id}/#", options


@dataclass(frozen=True)
class Route:
    kind: str
    device_id: str
    leaf: str


def route(topic: str, store_id: str) -> Route:
    """``retail/v1/{store}/{kind}/{device}/{leaf}`` → Route, else InvalidEvent('unknown_topic')."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "retail" or parts[1] != "v1" or parts[2] != store_id:
        raise InvalidEvent("unknown_topic", "topic is not retail/v1/<store>/<kind>/<device>/<leaf>")
    if parts[5] not in LEAVES:
        raise InvalidEvent("unknown_topic", f"topic leaf must be one of {', '.join(sorted(LEAVES))}")
    return Route(parts[3], parts[4], parts[5])


class _RegistryCache:
    """Device kinds by id, refreshed from the registry at most once a second on a miss."""

    def __init__(self, registry: DeviceRegistry) -> None:
        self._registry = registry
        self._kinds: dict[str, str] = {}
        self._loaded = 0.0

    def kind(self, device_id: str) -> str | None:
        found = self._kinds.get(device_id)
        if found is None and time.monotonic() - self._loaded > 1.0:
            self._kinds = {d.device_id: d.kind for d in self._registry.devices() if d.enabled}
            self._loaded = time.monotonic()
            found = self._kinds.get(device_id)
        return found


class MqttLink:
    """The gateway's MQTT link: :meth:`run` keeps one :class:`edge.mqttio.Connection` up (a
    reconnect loop around it) on the event loop; messages are routed, parsed and queued for the
    journal writer here, and acknowledged from the writer after the commit."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        store_id: str,
        ingestor: Ingestor,
        registry: DeviceRegistry,
        session_expiry_s: int,
        receive_maximum: int,
        keepalive_s: int,
        metrics: CollectorRegistry,
        version: str = "",
    ) -> None:
        self.host, self.port = host, port
        self.store_id = store_id
        self.root = f"retail/v1/{store_id}/"
        self.status_topic = self.root + "gateway/status"
        self.ingestor = ingestor
        self.devices = _RegistryCache(registry)
        self.decide: DecideHandler | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connected = threading.Event()
        self._version = version
        self._failing = False
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._answers: set[asyncio.Task[None]] = set()
        self._routes: dict[str, tuple[Route, Source]] = {}
        self._connected_gauge = Gauge(
            "edge_mqtt_connected", "1 while the gateway is connected to the broker", registry=metrics
        )
        self._retained_cleared = Counter(
            "edge_mqtt_retained_cleared", "Retained publishes on event/decide topics cleared from the broker",
            ["leaf"], registry=metrics,
        )  # fmt: skip
        self._receipts = Counter("edge_mqtt_receipts", "Commit receipts sent to devices", registry=metrics)
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(username, password)
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        client.max_queued_messages_set(10_000)
        self.client = client
        self._connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._connect_properties.SessionExpiryInterval = session_expiry_s
        self._connect_properties.ReceiveMaximum = min(receive_maximum, 65535)
        self._receive_maximum = min(receive_maximum, 65535)
        self._keepalive = keepalive_s

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start :meth:`run` as a task on ``loop`` (the running one)."""
        self.loop = loop
        self._task = loop.create_task(self.run(), name="mqtt-link")

    async def run(self) -> None:
        """Connect, consume, and on any loss reconnect (1 s doubling to 30 s) until stopped."""
        self.loop = asyncio.get_running_loop()
        delay = 1.0
        while not self._stopping:
            connection = Connection(self.client, self.host, self.port, keepalive=self._keepalive,
                                    clean_start=False, properties=self._connect_properties,
                                    queue_max=self._receive_maximum + 1)  # fmt: skip
            try:
                async with connection:
                    self._up(connection)
                    delay = 1.0
                    await self._consume(connection)
            except MqttError as exc:
                self._down(exc)
            if not self._stopping:
                await asyncio.sleep(delay * random.uniform(0.8, 1.0))
                delay = min(30.0, delay * 2)

    def _up(self, connection: Connection) -> None:
        if self._failing:
            log.warning("broker connection recovered")
        self._failing = False
        self._connection = connection
        topic, options = gateway_subscription(self.store_id)
        self.client.subscribe(topic, options=options)
        self.client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        self.connected.set()
        self._connected_gauge.set(1)

    def _down(self, exc: MqttError) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self._connected_gauge.set(0)
        self._connection = None
        if self._stopping:
            return
        if exc.refused or not was_up:
            if not self._failing:
                log.error("cannot connect the gateway to the broker: %s", exc)
            self._failing = True
        else:
            log.warning("lost the broker (%s); reconnecting", exc)

    async def stop(self) -> None:
        """Publish 'offline' (retained), disconnect cleanly, end :meth:`run`."""
        self._stopping = True
        connection = self._connection
        if connection is not None and connection.connected:
            info = self.client.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
            for _ in range(200):
                if info.is_published() or not connection.connected:
                    break
                await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._answers):
            task.cancel()

    def reconnect(self) -> None:
        """Drop the connection without a DISCONNECT (from any thread); :meth:`run` reconnects."""
        connection = self._connection
        if connection is not None:
            connection.call(connection.abort)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> None:  # fmt: skip
        """Publish as the gateway, from any thread (paho calls are made in the loop's thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if self._in_loop():
            self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        else:
            loop.call_soon_threadsafe(partial(self.client.publish, topic, payload, qos=qos, retain=retain,
                                              properties=properties))  # fmt: skip

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _status(self, state: str) -> str:
        return json.dumps({"status": state, "storeId": self.store_id, "version": self._version,
                           "at": int(time.time())})  # fmt: skip

    # -- the message path (the loop's thread) ----------------------------------------------
    async def _consume(self, connection: Connection) -> None:
        """Take what arrived, route and parse it, queue it for the writer in one entry."""
        ingestor = self.ingestor
        while True:
            messages = await connection.batch()
            items = []
            for msg in messages:
                ack = _acker(connection, msg.mid, msg.qos)
                try:
                    items.append(self._handle(msg, ack))
                except Exception:  # never let one message end the link or stay unacked
                    log.exception("failed to handle a message on %s", msg.topic[:200])
                    items.append(ingestor.rejection(Source(self.store_id, "?", "gateway", "mqtt"), "internal_error",
                                                    "the gateway failed to handle this message", b"", ack))  # fmt: skip
            try:
                ingestor.enqueue_many(items, block=False)
            except Busy:  # the writer is behind: wait for room off the loop
                await asyncio.to_thread(ingestor.enqueue_many, items)

    def _handle(self, msg: mqtt.MQTTMessage, ack: Callable[[Any], None]) -> _Item:
        """Route one message: the item to journal, refuse or only acknowledge, ``ack`` its on_done."""
        ingestor = self.ingestor
        payload = bytes(msg.payload)  # paho's payload is bytes already: no copy
        topic = msg.topic
        known = self._routes.get(topic)
        if known is None:
            try:
                where = route(topic, self.store_id)
            except InvalidEvent as exc:
                source = Source(self.store_id, "?", "gateway", "mqtt")
                return ingestor.rejection(source, exc.reason, f"{exc.detail} (topic {topic[:120]})", payload, ack)
            if len(self._routes) >= 10_000:  # devices' topics repeat: a small cache, emptied if it fills
                self._routes.clear()
            known = self._routes[topic] = (where, Source(self.store_id, where.device_id, where.kind, "mqtt"))
        where, source = known
        if msg.retain and where.leaf != "status":  # never kept: the payload may carry identifiers
            self.client.publish(msg.topic, b"", qos=1, retain=True)
            self._retained_cleared.labels(where.leaf).inc()
        if self.devices.kind(where.device_id) != where.kind:
            return ingestor.rejection(source, "unknown_device", "no registered device of that kind and id",
                                      payload, ack)  # fmt: skip
        if where.leaf == "events":
            if _wants_receipt(msg):
                ack = self._with_receipt(ack, f"{self.root}{where.kind}/{where.device_id}/receipts", payload)
            item = ingestor.prepare_payload(source, payload)
        elif where.leaf == "status":
            if not payload:  # a device clearing its retained status
                return ingestor.ack_only(ack)
            status = _status_text(payload)
            event = {"event": "Device Status", "properties": {"status": status, "kind": where.kind}}
            item = ingestor.prepare(source, [event], payload)
        else:
            self._decide(source, msg)
            return ingestor.ack_only(ack)
        item.on_done = ack
        return item

    def _with_receipt(self, ack: Callable[[Any], None], topic: str, payload: bytes) -> Callable[[Any], None]:
        def ack_and_receipt(result: Any) -> None:  # in the journal writer's thread
            ack(result)
            if isinstance(result, PublishResult):
                rejected = [{"messageId": mid, "reason": r.reason}
                            for r, mid in zip(result.rejected, _ids_at(payload, [r.index for r in result.rejected]),
                                              strict=True)]  # fmt: skip
                body = json.dumps({"committed": list(result.message_ids), "rejected": rejected},
                                  separators=(",", ":"))  # fmt: skip
                self.publish(topic, body, qos=1)
                self._receipts.inc()

        return ack_and_receipt

    def _decide(self, source: Source, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        reply_to = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        if not reply_to or not reply_to.startswith(f"{self.root}{source.kind}/{source.device_id}/"):
            self.ingestor.reject(source, "bad_request", "decide needs a response topic under the device's own topics",
                                 bytes(msg.payload), None)  # fmt: skip
            return
        assert self.loop is not None
        task = self.loop.create_task(self._answer(source, bytes(msg.payload), reply_to, correlation))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer(self, source: Source, payload: bytes, reply_to: str, correlation: bytes | None) -> None:
        try:
            request = json.loads(payload)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            if self.decide is None:
                response: dict[str, Any] = {"error": "decisioning is not enabled on this gateway"}
            else:
                response = await self.decide(source, request)
        except (ValueError, UnicodeDecodeError) as exc:
            response = {"error": f"bad request: {type(exc).__name__}"}
        except InvalidEvent as exc:
            response = {"error": exc.reason, "detail": exc.detail}
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if correlation is not None:
            props.CorrelationData = correlation
        self.publish(reply_to, json.dumps(response), qos=1, properties=props)


def _acker(connection: Connection, mid: int, qos: int) -> Callable[[Any], None]:
    def ack(result: Any) -> None:  # in the journal writer's thread, in arrival order
        if isinstance(result, BaseException):
            return  # not durable: no PUBACK, the broker redelivers after reconnect
        connection.ack_threadsafe(mid, qos)

    return ack


def _wants_receipt(msg: mqtt.MQTTMessage) -> bool:
    props = getattr(msg, "properties", None)
    return RECEIPT_PROPERTY in (getattr(props, "UserProperty", None) or [])


def _ids_at(payload: bytes, indices: list[int]) -> list[str | None]:
    """The messageIds at ``indices`` of a JSON event or array (only when something was rejected)."""
    if not indices:
        return []
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return [None for _ in indices]
    items = data if isinstance(data, list) else [data]
    found: list[str | None] = []
    for i in indices:
        item = items[i] if 0 <= i < len(items) else None
        mid = item.get("messageId") if isinstance(item, dict) else None
        found.append(mid if isinstance(mid, str) else None)
    return found


def _status_text(payload: bytes) -> str:
    try:
        data = json.loads(payload, parse_constant=str)
    except (ValueError, RecursionError):  # not JSON, or an integer too long to convert
        return payload[:32].decode("utf-8", errors="replace").strip() or "unknown"
    if isinstance(data, dict) and isinstance(data.get("status"), str):
        return str(data["status"])[:32]
    return str(data)[:32]
