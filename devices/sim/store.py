"""The simulated store: customers walking through, devices reporting what they see.

Local devices are driven through the real adapter inputs of the gateway's devices component —
BLE advertisements through ``ble.on_advertisement`` (the scanner callback), the till through a
pty pair (``os.openpty``) the POS adapter opens with pyserial, the camera through generated
frames handed to ``camera.on_frame`` — and network devices (kiosks, the display, the POS's own
MQTT link) connect to the broker with their own credentials from the fleet file.

A customer's visit: arrive (app users are seen by BLE presence once their app key is
registered), dwell, sign in at a kiosk with consent (``Consent Updated`` with
``categoryPreferences`` and ``identifiers``, plus the app presence key on a first visit),
browse (``Product Viewed``) and ask for offers, fill a basket at the till (POS frames, loyalty
card for members), pay (order completed) and sometimes redeem the offer they were shown.
Everything runs on a :class:`~devices.sim.clock.SimClock` (``--speed`` simulated seconds per
real second).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import re
import tty
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devices.ble.protocol import APPLE_COMPANY_ID
from devices.ble.rotating import major_minor, window_index
from devices.ble.scanner import Advertisement
from devices.camera.protocol import encode_compact_token
from devices.errors import DeviceUnavailable
from devices.mqtt_client import DeviceClient, DeviceIdentity
from devices.pos.protocol import ItemAdded, LoyaltyCard, OrderCompleted, encode_frame
from devices.sim.catalog import Product
from devices.sim.clock import SimClock
from devices.sim.fleet import Fleet
from devices.sim.frames import Scene

if TYPE_CHECKING:
    from devices.component import DevicesComponent

__all__ = ["Customer", "SimulationReport", "StoreSimulation"]

log = logging.getLogger(__name__)


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_POS_SKU = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


@dataclass
class Customer:
    number: int
    email: str
    loyalty_number: str
    app_key: bytes | None  # has the store app with presence opted in
    member: bool
    app_id: str
    registered: bool = False


@dataclass
class SimulationReport:
    visits: int = 0
    events: Counter[str] = field(default_factory=Counter)
    pos_frames: int = 0
    advertisements: int = 0
    camera_frames: int = 0
    display_updates: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        events = ", ".join(f"{name} {count}" for name, count in sorted(self.events.items()))
        return (f"{self.visits} visits; MQTT events: {events or 'none'}; POS frames {self.pos_frames};"
                f" BLE advertisements {self.advertisements}; camera frames {self.camera_frames};"
                f" pole display updates {self.display_updates}"
                + (f"; errors: {dict(self.errors)}" if self.errors else ""))  # fmt: skip


class StoreSimulation:
    def __init__(
        self,
        fleet: Fleet,
        products: list[Product],
        clock: SimClock,
        *,
        devices: DevicesComponent | None = None,
        seed: int = 1,
        customers: int = 40,
        arrivals_per_hour: float = 30.0,
    ) -> None:
        self.fleet = fleet
        self.products = products
        self.pos_products = [p for p in products if _POS_SKU.match(p.sku)] or products
        self.clock = clock
        self.devices = devices
        self.rng = random.Random(seed)
        self.arrivals_per_hour = arrivals_per_hour
        self.report = SimulationReport()
        self.population = [self._customer(i) for i in range(customers)]
        self._in_store: set[int] = set()
        self._near_display = 0
        self._till = asyncio.Lock()
        self._kiosks: list[DeviceClient] = []
        self._pos_client: DeviceClient | None = None
        self._pos_master: int | None = None
        self._order_no = 0
        self._qr_nonce = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._pty_fds: list[int] = []
        self._onboarded: list[Customer] = []
        # baskets have structure a trigger can learn: three pairs of the commonest categories,
        # the second usually bought with the first (the basket-complement trigger's lift)
        by_category: dict[str, list[Product]] = {}
        for product in self.pos_products:
            by_category.setdefault(product.category, []).append(product)
        common = [c for c, _ in Counter({c: len(ps) for c, ps in by_category.items()}).most_common(6)]
        self._by_category = by_category
        self._companion = {common[i]: common[i + 1] for i in range(0, len(common) - 1, 2)}

    def _customer(self, i: int) -> Customer:
        rng = self.rng
        has_app = rng.random() < 0.5
        return Customer(
            number=i,
            email=f"shopper{i:04d}@example.com",
            loyalty_number=f"60{rng.randrange(10**13, 10**14)}",
            app_key=rng.randbytes(32) if has_app else None,
            member=rng.random() < 0.6,
            app_id=f"app-{rng.randrange(16**8):08x}",
        )

    # -- running ---------------------------------------------------------------------------
    async def run(self, hours: float | None) -> SimulationReport:
        """Simulate ``hours`` of opening time (forever if None); returns the report."""
        clients = []
        for device in self.fleet.devices:
            if device.kind in ("kiosk", "display", "tablet", "pos"):
                identity = DeviceIdentity(self.fleet.store_id, device.kind, device.device_id)
                clients.append((device.kind, DeviceClient(identity, self.fleet.broker_host, self.fleet.broker_port,
                                                          device.mqtt_password)))  # fmt: skip
        connected: list[DeviceClient] = []
        try:
            for kind, client in clients:
                try:
                    await client.__aenter__()
                except DeviceUnavailable as exc:
                    self.report.errors[f"connect {kind}"] += 1
                    log.warning("simulated %s could not connect: %s", kind, exc)
                    continue
                connected.append(client)
                if kind == "kiosk":
                    self._kiosks.append(client)
                elif kind == "pos" and self._pos_client is None:
                    self._pos_client = client
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                background = [
                    tasks.create_task(self._attach_till()),
                    tasks.create_task(self._camera_loop()),
                ]
                background += [tasks.create_task(self._display_loop(c)) for c in connected
                               if c.identity.kind == "display"]  # fmt: skip
                await self._onboard()
                await self._upload_history()
                await self._arrivals(tasks, hours)
                for task in background:
                    task.cancel()
        finally:
            for client in reversed(connected):
                await client.__aexit__(None, None, None)
            self._close_till()
        return self.report

    async def _onboard(self) -> None:
        """App users who signed up on an earlier day: their consent (and app key) is on file, so
        BLE presence sees them from the door."""
        if not self._kiosks:
            return
        for customer in self.population:
            if customer.app_key is not None and self.rng.random() < 0.6:
                await self._consent(self._kiosks[0], customer, uuid.uuid4().hex)
                self._onboarded.append(customer)

    async def _upload_history(self, weeks: int = 6, receipts: int = 320) -> None:
        """The till's back office uploads its recent receipts when the store opens (as a till
        does after an outage): each with the ``timestamp`` of the sale, weeks ago. App members
        who gave their e-mail for e-receipts (the onboarded ones) buy their two staple
        categories about weekly, so the gateway learns repurchase cycles from when they bought;
        every basket has the simulator's complement structure, so it learns complements."""
        if self._pos_client is None:
            return
        await asyncio.sleep(1.0)  # the onboarding consents are committed first (real time)
        rng, now = self.rng, self.clock.now()
        day = 86_400.0
        staples = list(self._companion) + list(self._companion.values())
        history: list[tuple[float, dict[str, Any]]] = []
        for customer in self._onboarded:
            mine = rng.sample(staples, k=min(2, len(staples)))
            last = now - rng.uniform(0.5, 12) * day  # some are due again now, some are not
            at = now - weeks * 7 * day
            while at <= last:
                basket = [rng.choice(self._by_category[c]) for c in mine] + self._basket()
                history.append((at, {"identifiers": {"email": customer.email}, "products": basket}))
                at += rng.uniform(6, 8) * day
        for i in range(receipts):
            history.append((now - rng.uniform(0, weeks * 7) * day, {"anonymous": f"till-upload-{i}",
                                                                     "products": self._basket()}))  # fmt: skip
        history.sort(key=lambda h: h[0])
        events = []
        for at, receipt in history:
            self._order_no += 1
            props: dict[str, Any] = {"orderId": f"SIM-{self._order_no:06d}", "products": [
                {"sku": p.sku, "quantity": 1, "price": p.price_cents / 100} for p in receipt["products"]]}  # fmt: skip
            event: dict[str, Any] = {"event": "Order Completed", "timestamp": _iso(at), "properties": props}
            if "identifiers" in receipt:
                props["identifiers"] = receipt["identifiers"]
            else:
                event["anonymousId"] = receipt["anonymous"]
            events.append(event)
        for i in range(0, len(events), 50):
            await self._publish(self._pos_client, events[i : i + 50])
        log.info("simulated till uploaded %d past receipts (%d of app members)", len(events),
                 len(events) - receipts)  # fmt: skip

    def _basket(self) -> list[Product]:
        """A few products, and often a complement pair: the first of a pair, usually with its companion."""
        rng = self.rng
        basket = rng.sample(self.pos_products, k=min(len(self.pos_products), rng.randint(1, 4)))
        if self._companion and rng.random() < 0.6:
            head = rng.choice(list(self._companion))
            basket.insert(0, rng.choice(self._by_category[head]))
            if rng.random() < 0.8:
                basket.append(rng.choice(self._by_category[self._companion[head]]))
        return basket

    async def _consent(self, kiosk: DeviceClient, customer: Customer, visit_id: str) -> dict[str, str]:
        identifiers = {"email": customer.email}
        prefs = {"personalization": True, "analytics": True, "cdp_sync": self.rng.random() < 0.7}
        consent: dict[str, Any] = {"event": "Consent Updated", "anonymousId": visit_id,
                                   "properties": {"categoryPreferences": prefs, "identifiers": identifiers}}  # fmt: skip
        if customer.app_key is not None and not customer.registered:
            consent["properties"]["appPresenceKey"] = base64.urlsafe_b64encode(customer.app_key).decode().rstrip("=")
            customer.registered = True
        await self._publish(kiosk, [consent])
        return identifiers

    async def _arrivals(self, tasks: asyncio.TaskGroup, hours: float | None) -> None:
        visits: list[asyncio.Task[None]] = []
        end = None if hours is None else self.clock.elapsed_s() + hours * 3600
        while end is None or self.clock.elapsed_s() < end:
            await self.clock.sleep(self.rng.expovariate(self.arrivals_per_hour / 3600))
            idle = [c for c in self.population if c.number not in self._in_store]
            if not idle or (end is not None and self.clock.elapsed_s() >= end):
                continue
            customer = self.rng.choice(idle)
            self._in_store.add(customer.number)
            visits.append(tasks.create_task(self._visit(customer)))
            visits = [v for v in visits if not v.done()]
        if visits:
            await asyncio.wait(visits)

    # -- a visit ---------------------------------------------------------------------------
    async def _visit(self, customer: Customer) -> None:
        self.report.visits += 1
        visit_id = uuid.uuid4().hex
        presence = None
        try:
            if customer.registered and customer.app_key is not None and self._tasks is not None:
                presence = self._tasks.create_task(self._advertise(customer))  # ends with the visit
            await self.clock.sleep(self.rng.uniform(30, 180))
            shown: dict[str, Any] | None = None
            kiosk = self.rng.choice(self._kiosks) if self._kiosks else None
            if kiosk is not None and self.rng.random() < 0.7:
                shown = await self._at_kiosk(kiosk, customer, visit_id)
            elif self.rng.random() < 0.3:
                await self._show_qr(customer)
            self._near_display += 1
            await self.clock.sleep(self.rng.uniform(20, 120))
            self._near_display -= 1
            await self._checkout(customer, shown)
            await self.clock.sleep(self.rng.uniform(10, 40))
        except DeviceUnavailable as exc:
            self.report.errors[type(exc).__name__] += 1
            log.info("simulated visit hit a device error: %s", exc)
        finally:
            if presence is not None:
                presence.cancel()
            self._in_store.discard(customer.number)

    async def _publish(self, client: DeviceClient, events: list[dict[str, Any]]) -> None:
        await client.publish_events(events)
        for event in events:
            self.report.events[event["event"]] += 1

    async def _at_kiosk(self, kiosk: DeviceClient, customer: Customer, visit_id: str) -> dict[str, Any] | None:
        identifiers = await self._consent(kiosk, customer, visit_id)
        viewed = self.rng.sample(self.products, k=min(len(self.products), self.rng.randint(1, 4)))
        for product in viewed:
            await self.clock.sleep(self.rng.uniform(5, 30))
            await self._publish(kiosk, [{"event": "Product Viewed", "anonymousId": visit_id,
                                         "properties": {"sku": product.sku, "identifiers": identifiers}}])  # fmt: skip
        reply = await kiosk.decide({"placement": "kiosk_home", "identifiers": identifiers, "anonymousId": visit_id})
        offers = reply.get("offers") or []
        if not offers:
            return None
        offer = offers[0]
        await self._publish(kiosk, [{"event": "Offer Viewed", "anonymousId": visit_id, "properties": {
            "offerId": offer.get("offerId", "?"), "decisionId": reply.get("decisionId"), "identifiers": identifiers}}])  # fmt: skip
        return {"offer": offer, "decisionId": reply.get("decisionId"), "identifiers": identifiers}

    async def _checkout(self, customer: Customer, shown: dict[str, Any] | None) -> None:
        basket = self._basket()
        offer_sku = shown["offer"].get("sku") if shown else None
        redeem = bool(offer_sku) and self.rng.random() < 0.4
        if redeem:
            basket.append(next((p for p in self.products if p.sku == offer_sku), basket[0]))
        async with self._till:
            self._order_no += 1
            order_id = f"SIM-{self._order_no:06d}"
            total = 0
            records: list[Any] = []
            if customer.member:
                records.append(LoyaltyCard(customer.loyalty_number))
            for product in basket:
                qty = self.rng.choice((1, 1, 1, 2))
                total += qty * product.price_cents
                records.append(ItemAdded(product.sku, qty, product.price_cents))
            for record in records:
                self._write_till(encode_frame(record))
                await self.clock.sleep(self.rng.uniform(2, 6))
            await self.clock.sleep(self.rng.uniform(45, 90))  # the customer pays: the pole display's moment
            self._write_till(encode_frame(OrderCompleted(order_id, total)))
        if redeem and shown is not None and self._pos_client is not None:
            await self._publish(self._pos_client, [{"event": "Offer Redeemed", "properties": {
                "offerId": shown["offer"].get("offerId", "?"), "decisionId": shown.get("decisionId"),
                "orderId": order_id, "identifiers": shown["identifiers"]}}])  # fmt: skip

    # -- local devices ---------------------------------------------------------------------
    async def _advertise(self, customer: Customer) -> None:
        """The customer's phone: the store app's iBeacon with the current rotating id."""
        assert customer.app_key is not None
        devices = self.devices
        if devices is None or devices.ble is None:
            return
        ble = devices.ble
        period_s = max(2.0, self.clock.speed / 10)
        uuid_bytes = ble.app_uuid.bytes
        base_rssi = self.rng.uniform(-66, -55)
        while True:
            now = devices.now()
            major, minor = major_minor(customer.app_key, window_index(now, ble.resolver.window_s))
            data = b"\x02\x15" + uuid_bytes + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + b"\xc5"
            rssi = round(self.rng.gauss(base_rssi, 4))
            ble.on_advertisement(Advertisement(f"7A:{customer.number:010X}"[-17:], {APPLE_COMPANY_ID: data}, {}, rssi))
            self.report.advertisements += 1
            await self.clock.sleep(period_s)

    async def _show_qr(self, customer: Customer) -> None:
        devices = self.devices
        if devices is None or devices.camera is None or devices.simulated_qr_signer is None:
            return
        self._qr_nonce += 1
        now = int(devices.now())
        token = encode_compact_token(customer.app_id, now, now + 120, devices.simulated_qr_signer.sign)
        await devices.camera.on_frame(Scene(self._qr_nonce).frame(1, token))
        self.report.camera_frames += 1

    async def _camera_loop(self) -> None:
        devices = self.devices
        if devices is None or devices.camera is None:
            return
        scene = Scene(7)
        while True:
            await devices.camera.on_frame(scene.frame(min(4, self._near_display)))
            self.report.camera_frames += 1
            await asyncio.sleep(1.0)  # real time: the camera's own frame rate, not compressed

    async def _attach_till(self) -> None:
        devices = self.devices
        if devices is None or devices.pos is None:
            return
        basket_master, basket_slave = os.openpty()
        display_master, display_slave = os.openpty()
        for fd in (basket_slave, display_slave):
            tty.setraw(fd)
        self._pos_master = basket_master
        self._pty_fds = [basket_slave, display_master, display_slave]
        devices.attach_pos_ports(os.ttyname(basket_slave), None, os.ttyname(display_slave))
        loop = asyncio.get_running_loop()
        loop.add_reader(display_master, self._read_display, display_master)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_reader(display_master)

    def _read_display(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        self.report.display_updates += data.count(b"\x0c")

    def _write_till(self, frame: bytes) -> None:
        if self._pos_master is None:
            return
        os.write(self._pos_master, frame)
        self.report.pos_frames += 1

    def _close_till(self) -> None:
        for fd in [self._pos_master, *self._pty_fds]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._pos_master = None
        self._pty_fds = []

    async def _display_loop(self, display: DeviceClient) -> None:
        async for offer in display.offers():
            payload = offer.payload if isinstance(offer.payload, dict) else {}
            offer_id = payload.get("offerId") or (payload.get("offers") or [{}])[0].get("offerId")
            if offer_id:
                await self._publish(display, [{"event": "Offer Viewed", "properties": {
                    "offerId": offer_id, "decisionId": payload.get("decisionId")}}])  # fmt: skip
