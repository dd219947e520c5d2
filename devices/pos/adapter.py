"""POS terminal → events, and offers → the customer pole display.

One :class:`PosTerminal` per till: it keeps the open basket (a visit id, lines, a loyalty card
if one was scanned), turns basket records and tapped receipts into events, and asks decisioning
for a pole-display offer after the basket changes — in its own loop, so a slow decision never
holds up reading the port. The display is initialised whenever its port opens (so also after
a replug), cleared when an order completes and after ``display_idle_s`` without a new offer.
A tapped receipt whose total differs from the sum of its lines is booked with
``properties.receiptCheck = "total_mismatch"`` (and ``linesTotal``), counted and logged, never
silently. Loyalty numbers go only into ``properties.identifiers`` (the
identity stage replaces them with a token before anything is stored); they are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from devices.events import track
from devices.outlet import EventOutlet
from devices.pos.display import PoleDisplay
from devices.pos.link import SerialLink
from devices.pos.protocol import (
    BasketRecord,
    FrameDecoder,
    ItemAdded,
    ItemRemoved,
    LoyaltyCard,
    OrderCompleted,
)
from devices.pos.receipt import Receipt, ReceiptDecoder, ReceiptGrammar
from edge.bus import Source
from edge.component import Clock, DecideHandler

__all__ = ["PosTerminal"]

log = logging.getLogger(__name__)


def _money(value_cents: int) -> float:
    return round(value_cents / 100, 2)


@dataclass
class _Basket:
    cart_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    lines: dict[str, list[int]] = field(default_factory=dict)  # sku -> [quantity, unit cents]
    loyalty_number: str | None = field(default=None, repr=False)


class PosTerminal:
    def __init__(
        self,
        *,
        store_id: str,
        device_id: str,
        outlet: EventOutlet,
        clock: Clock,
        decide: DecideHandler | None = None,
        display: PoleDisplay | None = None,
        display_idle_s: float = 120.0,
        decide_timeout_s: float = 2.0,
        receipt_grammar: ReceiptGrammar | None = None,
        receipt_code_page: str = "cp437",
    ) -> None:
        self.source = Source(store_id, device_id, "pos", "serial")
        self._outlet = outlet
        self._clock = clock
        self._decide = decide
        self.display = display or PoleDisplay()
        self._display_idle_s = display_idle_s
        self._display_probe_s = min(1.0, display_idle_s)
        self._decide_timeout_s = decide_timeout_s
        self._basket = _Basket()
        self._display_wanted = asyncio.Event()
        self._offer_wanted = False
        self._clear_wanted = False
        self._showing: bytes | None = None  # the offer frame on the display now, if any
        self.basket_decoder = FrameDecoder()
        self.receipt_decoder = ReceiptDecoder(receipt_grammar, code_page=receipt_code_page)
        self.displayed: list[bytes] = []  # what went to the display, newest last (bounded)

    # -- basket protocol -------------------------------------------------------------------
    def on_record(self, record: BasketRecord) -> None:
        now = self._clock()
        basket = self._basket
        context = {"cartId": basket.cart_id}
        if isinstance(record, ItemAdded | ItemRemoved):
            line = basket.lines.setdefault(record.sku, [0, record.unit_price_cents])
            delta = record.quantity if isinstance(record, ItemAdded) else -record.quantity
            line[0] = max(0, line[0] + delta)
            if line[0] == 0:
                del basket.lines[record.sku]
            name = "Product Added" if isinstance(record, ItemAdded) else "Product Removed"
            properties = {
                "sku": record.sku,
                "quantity": record.quantity,
                "price": _money(record.unit_price_cents),
                "cartId": basket.cart_id,
            }
            self._emit(track(name, now, properties, anonymous_id=basket.cart_id))
            self._want_offer()
        elif isinstance(record, LoyaltyCard):
            basket.loyalty_number = record.loyalty_number
            properties = {"method": "loyalty_card", "identifiers": {"loyaltyId": record.loyalty_number}, **context}
            self._emit(track("Customer Identified", now, properties, anonymous_id=basket.cart_id))
            self._want_offer()
        elif isinstance(record, OrderCompleted):
            products = [
                {"sku": sku, "quantity": qty, "price": _money(unit)} for sku, (qty, unit) in basket.lines.items()
            ]
            properties = {
                "orderId": record.order_id,
                "total": _money(record.total_cents),
                "revenue": _money(record.total_cents),
                "products": products,
                **context,
            }
            if basket.loyalty_number is not None:
                properties["identifiers"] = {"loyaltyId": basket.loyalty_number}
            self._emit(track("Order Completed", now, properties, anonymous_id=basket.cart_id))
            self._basket = _Basket()
            self._want_clear()

    def on_basket_bytes(self, chunk: bytes) -> None:
        for record in self.basket_decoder.feed(chunk):
            self.on_record(record)

    # -- receipt tap -----------------------------------------------------------------------
    def on_receipt(self, receipt: Receipt) -> None:
        products: list[dict[str, Any]] = []
        for item in receipt.items:
            product: dict[str, Any] = {
                "name": item.name,
                "quantity": item.quantity,
                "price": _money(item.amount_cents // item.quantity),
            }
            if item.sku:
                product["sku"] = item.sku
            products.append(product)
        properties: dict[str, Any] = {"products": products, "source": "receipt", "receiptCheck": receipt.check}
        if receipt.total_cents is not None:
            properties["total"] = properties["revenue"] = _money(receipt.total_cents)
        if receipt.check != "ok":
            properties["linesTotal"] = _money(receipt.lines_total_cents)
            log.warning("receipt tap: %s (printed total vs %d item lines)", receipt.check, len(receipt.items))
        if receipt.unknown_commands:
            properties["unknownCommands"] = receipt.unknown_commands
        if receipt.loyalty_number is not None:
            properties["identifiers"] = {"loyaltyId": receipt.loyalty_number}
        self._emit(track("Order Completed", self._clock(), properties))
        self._want_clear()

    def on_receipt_bytes(self, chunk: bytes) -> None:
        for receipt in self.receipt_decoder.feed(chunk):
            self.on_receipt(receipt)

    # -- port loops (run under the component's TaskGroup via link.reconnecting) -------------
    async def read_basket(self, link: SerialLink) -> None:
        async for chunk in link.chunks():
            self.on_basket_bytes(chunk)

    async def read_receipts(self, link: SerialLink) -> None:
        async for chunk in link.chunks():
            self.on_receipt_bytes(chunk)

    async def drive_display(self, link: SerialLink) -> None:
        """Initialise the display, then show an offer after each basket change (latest basket
        wins) and clear it after an order or when idle. While nothing happens the port is probed
        (a display sends nothing) so an unplug is noticed within a second; the reconnect loop then
        reopens and re-initialises it and the offer of a basket still open is put back."""
        loop = asyncio.get_running_loop()
        await self._write_display(link, self.display.initialise())
        if self._showing is not None:
            await self._write_display(link, self._showing)
        shown_at = loop.time()
        while True:
            try:
                async with asyncio.timeout(self._display_probe_s):
                    await self._display_wanted.wait()
            except TimeoutError:
                await link.read()  # raises DeviceUnavailable once the display is gone
                if self._showing is None or loop.time() - shown_at < self._display_idle_s:
                    continue
                self._clear_wanted = True
            self._display_wanted.clear()
            if self._clear_wanted:
                self._clear_wanted = False
                if self._showing is not None:
                    self._showing = None
                    await self._write_display(link, self.display.clear())
            if self._offer_wanted:
                self._offer_wanted = False
                frame = await self.offer_frame()
                if frame is not None and not self._clear_wanted:
                    self._showing = frame
                    shown_at = loop.time()
                    await self._write_display(link, frame)

    async def _write_display(self, link: SerialLink, frame: bytes) -> None:
        await link.write(frame)
        self.displayed = [*self.displayed[-9:], frame]

    def _want_offer(self) -> None:
        self._offer_wanted = True
        self._display_wanted.set()

    def _want_clear(self) -> None:
        self._offer_wanted = False
        self._clear_wanted = True
        self._display_wanted.set()

    async def offer_frame(self) -> bytes | None:
        if self._decide is None:
            return None
        basket = self._basket
        request: dict[str, Any] = {
            "placement": "pole_display",
            "basket": sorted(basket.lines),
            "anonymousId": basket.cart_id,
        }
        if basket.loyalty_number is not None:  # decisioning tokenises it in-process, like the identity stage
            request["identifiers"] = {"loyaltyId": basket.loyalty_number}
        try:
            async with asyncio.timeout(self._decide_timeout_s):
                response = await self._decide(self.source, request)
        except TimeoutError:
            log.warning("pole display: no decision within %.1f s", self._decide_timeout_s)
            return None
        except Exception:  # decisioning is another component: a failure must not stop the till
            log.exception("pole display: decision failed")
            return None
        offers = response.get("offers") or []
        if not offers or not isinstance(offers[0], dict) or not offers[0].get("title"):
            return None
        return self.display.offer(str(offers[0]["title"]))

    def _emit(self, event: dict[str, Any]) -> None:
        self._outlet.offer(self.source, event)
