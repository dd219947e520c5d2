"""Shoppers with *known* responses to pushed offers, for test-and-learn of triggers.

Each simulated visit views a product at a kiosk (a committed ``Product Viewed``); whatever the
gateway pushes to that kiosk's ``…/offers`` topic is what the shopper sees. A shopper who saw
variant ``v`` buys the product within the window with probability ``rates[v]``; one who saw
nothing (holdout, or nothing delivered) with the ``baseline`` — so the true uplift of ``v`` over
the holdout is ``rates[v] − baseline``, the figure the report must recover.

Time is an accelerated clock (a simulated month runs in seconds): :func:`run_month` calls
``feed(events, now_ms)`` for every committed batch and ``tick(now_ms)`` as time passes; the
caller connects those to the trigger runtime (the same code the gateway runs) and hands in an
:class:`OfferInbox` as its publisher.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.bus import Source
from edge.events import Event, iso_ms

__all__ = ["MonthResult", "OfferInbox", "make_event", "run_month"]

_DAY_MS = 86_400_000


class OfferInbox:
    """A publisher that keeps what each topic received (the touch points' view)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        self.messages.append((topic, json.loads(payload), retain))

    def take(self) -> list[tuple[str, dict[str, Any], bool]]:
        out, self.messages = self.messages, []
        return out


def make_event(
    name: str,
    at_ms: int,
    *,
    store: str = "sim",
    device: str = "kiosk-1",
    kind: str = "kiosk",
    anonymous_id: str | None = None,
    user_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    consent: Mapping[str, bool] | None = None,
    occurred_ms: int | None = None,
) -> Event:
    """A committed event as the journal listener sees it, received at ``at_ms``; ``occurred_ms``
    sets its ``timestamp`` (an upload of what happened earlier)."""
    mid = message_id or f"sim-{name.replace(' ', '-').lower()}-{at_ms}-{random.getrandbits(40):x}"
    source = Source(store, device, kind, "mqtt")
    body: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": mid,
        "properties": dict(properties or {}),
        "storeId": store,
        "deviceId": device,
        "channel": source.channel,
    }
    if consent is not None:
        body["context"] = {"consent": {"categoryPreferences": dict(consent)}}
    if anonymous_id:
        body["anonymousId"] = anonymous_id
    if user_id:
        body["userId"] = user_id
    timestamp = "" if occurred_ms is None else iso_ms(occurred_ms)
    return Event(mid, "track", name, user_id, anonymous_id, timestamp, at_ms, source, body)


@dataclass
class MonthResult:
    firings: dict[str, int] = field(default_factory=dict)  # arm -> firings seen by shoppers
    delivered: dict[str, int] = field(default_factory=dict)
    purchases: int = 0
    visits: int = 0


async def run_month(
    feed: Callable[[Sequence[Event], int], Awaitable[Any]],
    tick: Callable[[int], Awaitable[Any]],
    inbox: OfferInbox,
    *,
    rates: Mapping[str, float],
    baseline: float,
    seed: int,
    days: int = 30,
    visits_per_day: int = 100,
    start_ms: int = 1_767_600_000_000,
    skus: Sequence[str] = ("SKU00007", "SKU00011", "SKU00013"),
    kiosk: str = "kiosk-1",
) -> MonthResult:
    rng = random.Random(seed)
    result = MonthResult()
    orders: list[tuple[int, str, str]] = []  # purchases still to come, in time order

    async def until(now: int) -> None:
        while orders and orders[0][0] <= now:
            at, visit, sku = heapq.heappop(orders)
            await tick(at)
            await feed(
                [
                    make_event(
                        "Order Completed",
                        at,
                        device="pos-1",
                        kind="pos",
                        anonymous_id=visit,
                        properties={"orderId": f"o-{visit}", "products": [{"sku": sku, "quantity": 1}]},
                        message_id=f"sim-order-{visit}",
                    )
                ],
                at,
            )
        await tick(now)

    for day in range(days):
        day_ms = start_ms + day * _DAY_MS
        times = sorted(rng.uniform(8 * 3_600_000, 20 * 3_600_000) for _ in range(visits_per_day))
        for i, offset in enumerate(times):
            now = int(day_ms + offset)
            visit = f"d{day}-v{i}-{seed}"
            sku = rng.choice(skus)
            await until(now)
            inbox.take()
            await feed(
                [
                    make_event(
                        "Product Viewed",
                        now,
                        device=kiosk,
                        anonymous_id=visit,
                        properties={"sku": sku},
                        message_id=f"sim-view-{visit}",
                    )
                ],
                now,
            )
            shown = [p for t, p, _ in inbox.take() if t.endswith(f"/{kiosk}/offers")]
            arm = shown[-1]["arm"] if shown else None
            result.visits += 1
            if arm is not None:
                result.delivered[arm] = result.delivered.get(arm, 0) + 1
            p = rates.get(arm, baseline) if arm is not None else baseline
            if rng.random() < p:
                result.purchases += 1
                heapq.heappush(orders, (now + rng.randint(60_000, 20 * 60_000), visit, sku))
        await until(day_ms + _DAY_MS - 1)
    return result
