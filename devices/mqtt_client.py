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
gets a UUIDv7 ``messageId`` if it has none, so a QoS 1 redelivery is de-duplicated.

End-to-end receipts (``receipts=True``, the default): each events publish carries the MQTT 5 user
property ``receipt=1`` and stays *pending* until the gateway says on ``…/receipts`` that its
messageIds are committed (or refused with a reason); a pending publish is sent again after
``receipt_timeout_s`` (doubling, at most a minute) and after every reconnect — so a broker that
crashes after its PUBACK loses nothing. :meth:`DeviceClient.wait_committed` waits for them all.

TLS: ``tls_ca`` (the store CA, PEM text) turns TLS on; ``client_cert``/``client_key`` (PEM) add
mutual TLS; ``transport="websockets"`` speaks MQTT over (secure) WebSockets at ``ws_path``.
:meth:`DeviceClient.from_bundle` builds a client from ``edge devices add``'s provisioning bundle.
The gateway's idiom (:class:`edge.mqttio.Connection`): paho driven by the event loop, no thread
of its own; a background task is the reconnect loop (1 s doubling to 10 s) and renews the
subscriptions on every connect. The retained ``…/status`` is ``{"status": "online"}`` while
connected and the Last Will sets ``offline``. Vendor types stop here: :class:`Offer` messages
are plain dataclasses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.errors import DeviceUnavailable
from edge.ids import uuid7
from edge.mqttio import Connection, MqttError

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


@dataclass
class _Pending:
    """An events publish the gateway has not yet confirmed."""

    payload: str
    ids: set[str]
    due: float
    tries: int = 0
    acked: bool = False  # the broker's PUBACK came: from now on only a receipt or a re-send saves it
    rejected: dict[str, str] = field(default_factory=dict)


def _tls_context(ca_pem: str, cert_pem: str | None, key_pem: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    if cert_pem and key_pem:  # ssl only loads a chain from files: a private temporary directory
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            for path, text in ((cert_file, cert_pem), (key_file, key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
            context.load_cert_chain(cert_file, key_file)
    return context


class DeviceClient:
    def __init__(
        self,
        identity: DeviceIdentity,
        host: str,
        port: int,
        password: str | None,
        *,
        username: str | None = None,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        offers_queue: int = 100,
        receipts: bool = True,
        receipt_timeout_s: float = 10.0,
        max_pending: int = 10_000,
        tls_ca: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        transport: str = "tcp",
        ws_path: str = "/mqtt",
    ) -> None:
        self.identity = identity
        self._host, self._port = host, port
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._published: dict[int, asyncio.Future[None]] = {}
        self._early_acks: set[int] = set()
        self._replies: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._offers: asyncio.Queue[Offer] = asyncio.Queue(offers_queue)
        self.offers_dropped = 0
        self._response_topic = f"{identity.base}/responses/{uuid.uuid4().hex[:12]}"
        self._receipts_topic = f"{identity.base}/receipts"
        self._receipts = receipts
        self._receipt_timeout_s = receipt_timeout_s
        self._max_pending = max_pending
        self._pending: dict[int, _Pending] = {}  # by a local sequence number
        self._pending_by_id: dict[str, int] = {}
        self._sequence = 0
        self._settled: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._subscriptions = [self._response_topic] + ([self._receipts_topic] if receipts else [])
        self.resent = 0
        self.rejected: dict[str, str] = {}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{identity.device_id}-{uuid.uuid4().hex[:8]}",  # the broker binds it to the device
            protocol=mqtt.MQTTv5,
            transport="websockets" if transport == "websockets" else "tcp",
        )
        if transport == "websockets":
            client.ws_set_options(path=ws_path)
        if tls_ca is not None:
            client.tls_set_context(_tls_context(tls_ca, client_cert, client_key))
        if password is not None or username is not None:
            client.username_pw_set(username or identity.device_id, password)
        client.will_set(f"{identity.base}/status", json.dumps({"status": "offline"}), qos=1, retain=True)
        client.on_publish = self._on_publish
        self._client = client

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], *, via: str = "mqtts", **options: Any) -> DeviceClient:
        """A client from ``edge devices add``'s provisioning bundle; ``via``: mqtts | mtls | wss."""
        identity = DeviceIdentity(bundle["store_id"], bundle["kind"], bundle["device_id"])
        url = bundle["urls"][via]
        scheme, _, rest = url.partition("://")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        tls: dict[str, Any] = {"tls_ca": bundle["ca_cert"]}
        if via == "mtls":
            tls |= {"client_cert": bundle["client_cert"], "client_key": bundle["client_key"]}
            password = None
        else:
            password = bundle["mqtt_password"]
        if scheme == "wss":
            tls |= {"transport": "websockets", "ws_path": "/" + rest.split("/", 1)[1]}
        return cls(identity, host.strip("[]"), int(port), password, **tls, **options)

    # -- connection events and paho callbacks (the loop's thread) --------------------------
    def _up(self) -> None:
        """Connected (again): renew the subscriptions; what the old broker acknowledged may be
        gone with it, so pending events are due now."""
        for topic in self._subscriptions:
            self._client.subscribe(topic, qos=1)
        for pending in self._pending.values():
            if pending.acked:
                pending.due = 0.0
        self._arm_timer(0.0)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._publish_done(mid)

    def _publish_done(self, mid: int) -> None:
        future = self._published.pop(mid, None)
        if future is None:
            self._early_acks.add(mid)  # acknowledged before publish() registered its future
        elif not future.done():
            future.set_result(None)

    def _receive(self, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props else None
        try:
            payload = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = msg.payload.decode("utf-8", errors="replace")
        self._deliver(msg.topic, payload, bool(msg.retain), correlation)

    def _deliver(self, topic: str, payload: Any, retained: bool, correlation: bytes | None) -> None:
        if topic == self._receipts_topic:
            self._receipt(payload)
            return
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

    # -- receipts --------------------------------------------------------------------------
    def _receipt(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        done = [m for m in payload.get("committed", []) if isinstance(m, str)]
        for item in payload.get("rejected", []):
            if isinstance(item, dict) and isinstance(item.get("messageId"), str):
                done.append(item["messageId"])
                self.rejected[item["messageId"]] = str(item.get("reason"))
        for message_id in done:
            seq = self._pending_by_id.pop(message_id, None)
            pending = self._pending.get(seq) if seq is not None else None
            if pending is not None:
                pending.ids.discard(message_id)
                if not pending.ids:
                    del self._pending[seq]  # type: ignore[arg-type]
        if not self._pending and self._settled is not None:
            self._settled.set()

    def _arm_timer(self, delay: float) -> None:
        if self._loop is None or not self._receipts:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, self._resend_due)

    def _resend_due(self) -> None:
        """Publish again what is pending past its due time (same messageIds: de-duplicated)."""
        self._timer = None
        if not self.connected:
            return  # the next connect re-arms the timer
        now = time.monotonic()
        for pending in self._pending.values():
            if pending.due <= now:
                info = self._client.publish(f"{self.identity.base}/events", pending.payload, qos=1,
                                            properties=self._receipt_properties())  # fmt: skip
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    pending.tries += 1
                    self.resent += 1
                pending.due = now + min(60.0, self._receipt_timeout_s * 2 ** min(pending.tries, 6))
        if self._pending:
            self._arm_timer(max(0.05, min(p.due for p in self._pending.values()) - now))

    @staticmethod
    def _receipt_properties() -> Properties:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho ships no annotations here
        props.UserProperty = [("receipt", "1")]
        return props

    @property
    def pending(self) -> int:
        """Events published but not yet confirmed committed by the gateway."""
        return len(self._pending_by_id)

    async def wait_committed(self, timeout_s: float | None = None) -> None:
        """Wait until the gateway has confirmed every published event (receipts on)."""
        if not self._receipts:
            raise DeviceUnavailable("this client was made with receipts=False")
        if not self._pending:
            return
        self._settled = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s or self._timeout_s):
                await self._settled.wait()
        except TimeoutError:
            raise DeviceUnavailable(f"{self.pending} events not confirmed by the gateway in time") from None

    # -- connection ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

    def _new_connection(self) -> Connection:
        return Connection(self._client, self._host, self._port, keepalive=self._keepalive_s, clean_start=True,
                          timeout_s=self._timeout_s)  # fmt: skip

    async def _open(self, connection: Connection) -> None:
        try:
            await connection.__aenter__()
        except MqttError as exc:
            if exc.refused:
                raise DeviceUnavailable(f"broker refused {self.identity.device_id}: {exc}") from exc
            raise DeviceUnavailable(str(exc)) from exc
        self._connection = connection
        self._up()

    async def __aenter__(self) -> DeviceClient:
        self._loop = asyncio.get_running_loop()
        connection = self._new_connection()
        await self._open(connection)
        self._supervisor = self._loop.create_task(self._supervise(connection), name=f"mqtt-{self.identity.device_id}")
        try:
            await self.set_status("online")
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def _supervise(self, connection: Connection) -> None:
        """Consume the connection's messages; when it ends, reconnect (the reconnect loop)."""
        delay = 1.0
        while True:
            try:
                async for msg in connection.messages():
                    self._receive(msg)
            except MqttError as exc:
                log.info("device %s disconnected: %s", self.identity.device_id, exc)
            await connection.__aexit__(None, None, None)
            self._connection = None
            while True:
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
                connection = self._new_connection()
                try:
                    await self._open(connection)
                except DeviceUnavailable as exc:
                    log.info("device %s: reconnect failed: %s", self.identity.device_id, exc)
                    continue
                delay = 1.0
                break

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.connected:
                await self.set_status("offline")
        except (DeviceUnavailable, TimeoutError):
            pass
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass  # the supervisor's end, and perhaps a stop of our own task: counted below
            self._supervisor = None
        if self._connection is not None:
            await self._connection.__aexit__(None, None, None)  # a clean DISCONNECT: no Last Will
            self._connection = None
        futures: list[asyncio.Future[Any]] = [*self._published.values(), *self._replies.values()]
        for future in futures:
            if not future.done():
                future.cancel()
        if task is not None and task.cancelling() > cancels:
            # a stop of the task closing us arrived while it awaited the supervisor, whose
            # CancelledError looks the same: re-raised once the client is closed, not lost
            raise asyncio.CancelledError

    async def _subscribe(self, topic: str) -> None:
        if topic not in self._subscriptions:
            self._subscriptions.append(topic)
        result, _ = self._client.subscribe(topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise DeviceUnavailable(f"subscribe to {topic} failed: {mqtt.error_string(result)}")

    # -- publishing ------------------------------------------------------------------------
    async def _publish(self, topic: str, payload: str, *, retain: bool = False, properties: Properties | None = None,
                       pending: _Pending | None = None) -> None:  # fmt: skip
        assert self._loop is not None
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeviceUnavailable(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if info.mid in self._early_acks:
            self._early_acks.discard(info.mid)
            if pending is not None:
                pending.acked = True
            return
        future = self._loop.create_future()
        self._published[info.mid] = future
        try:
            async with asyncio.timeout(self._timeout_s):
                await future
            if pending is not None:
                pending.acked = True
        except TimeoutError:
            self._published.pop(info.mid, None)
            raise DeviceUnavailable(f"no PUBACK for {topic} within {self._timeout_s} s") from None

    async def publish_events(self, events: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[str]:
        """Publish one event or an array (QoS 1, returns after PUBACK); returns their messageIds."""
        batch = [events] if isinstance(events, Mapping) else list(events)
        prepared = [{"messageId": uuid7(), "type": "track", **event} for event in batch]
        body: Any = prepared[0] if isinstance(events, Mapping) else prepared
        payload = json.dumps(body, separators=(",", ":"))
        ids = [e["messageId"] for e in prepared]
        if not self._receipts:
            await self._publish(f"{self.identity.base}/events", payload)
            return ids
        if len(self._pending) >= self._max_pending:
            raise DeviceUnavailable(f"{len(self._pending)} publishes await the gateway's receipt; slow down")
        pending = _Pending(payload, set(ids), time.monotonic() + self._receipt_timeout_s)
        self._sequence += 1
        self._pending[self._sequence] = pending
        for message_id in ids:
            self._pending_by_id[message_id] = self._sequence
        if self._timer is None:
            self._arm_timer(self._receipt_timeout_s)
        await self._publish(f"{self.identity.base}/events", payload, properties=self._receipt_properties(),
                            pending=pending)  # fmt: skip
        return ids

    async def set_status(self, status: str, **details: Any) -> None:
        await self._publish(f"{self.identity.base}/status", json.dumps({"status": status, **details}), retain=True)

    async def decide(self, request: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """Ask the gateway for a decision; waits for the reply on this client's response topic."""
        assert self._loop is not None
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._replies[correlation] = future
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self._response_topic
        props.CorrelationData = correlation
        try:
            await self._publish(f"{self.identity.base}/decide", json.dumps(dict(request)), properties=props)
            async with asyncio.timeout(timeout_s or self._timeout_s):
                return await future
        except TimeoutError:
            raise DeviceUnavailable("no decision reply in time") from None
        finally:
            self._replies.pop(correlation, None)

    async def offers(self) -> AsyncIterator[Offer]:
        """Subscribe to ``…/offers`` and yield what arrives (the retained offer first)."""
        await self._subscribe(f"{self.identity.base}/offers")
        while True:
            yield await self._offers.get()
