"""What may leave the store, and what goes first when the outbox is full. Pure rules, no I/O.

Eligibility (DESIGN.md, Privacy): an event is sent when

* it is about a person (``userId`` set): the consent snapshot at ingest allowed ``cdp_sync``
  **and** ``still_allowed(userId)`` says the person has neither withdrawn nor been erased or
  suppressed since (asked again for every batch, at send time);
* it is about a visit (no ``userId`` but an ``anonymousId``): the snapshot allowed ``cdp_sync``
  (an anonymous visit id is still personal data under GDPR, so it needs the same consent);
* it is about no one (neither ``userId`` nor ``anonymousId``: audience counts, device status,
  gateway reports such as ``Sync Drops Reported``): always — it carries no personal data;
* it is a consent change (``Consent Updated`` with a ``userId``): always, grant or withdrawal,
  unless the person was erased — the centre must learn that the person said no — and only as
  :func:`consent_record`: the choice, its source, notice version and time, nothing else.

Value ranking for quota drops: a lower tier is dropped first, oldest first within a tier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = [
    "CONSENT_EVENT",
    "DEFAULT_TIER",
    "DROP_TIERS",
    "NEVER_DROPPED",
    "consent_record",
    "eligible",
    "tier_of",
]

#: tier → event names. Tier 0 goes first. Names not listed are in DEFAULT_TIER.
DROP_TIERS: Mapping[int, frozenset[str]] = {
    0: frozenset({"Zone Entered", "Zone Exited", "Audience Measured", "Device Status"}),
    1: frozenset(
        {
            "Product Viewed", "Product List Viewed", "Product List Filtered", "Products Searched",
            "Promotion Viewed", "Offer Viewed", "Offer Exposed", "Cart Viewed",
            "Checkout Step Viewed",
        }
    ),
    2: frozenset(
        {
            "Product Clicked", "Promotion Clicked", "Offer Clicked", "Product Added",
            "Product Removed", "Product Added to Wishlist", "Product Removed from Wishlist",
            "Product Shared", "Cart Shared", "Product Reviewed", "Checkout Started",
            "Checkout Step Completed", "Payment Info Entered", "Coupon Entered", "Coupon Applied",
            "Coupon Denied", "Coupon Removed", "Customer Identified",
        }
    ),
    3: frozenset(
        {
            "Order Completed", "Order Updated", "Order Refunded", "Order Cancelled",
            "Offer Redeemed", "Consent Updated", "Customer Erased",
        }
    ),
}  # fmt: skip
DEFAULT_TIER = 2  # unknown names and identify calls: kept longer than views, dropped before orders
#: Gateway reports that must reach the centre: never dropped by the quota.
NEVER_DROPPED = frozenset({"Sync Drops Reported"})
_TIER_BY_NAME = {name: tier for tier, names in DROP_TIERS.items() for name in names}


def tier_of(event_name: str | None) -> int:
    return _TIER_BY_NAME.get(event_name or "", DEFAULT_TIER)


def eligible(*, user_id: str | None, has_anonymous_id: bool, sync_allowed: bool, still_allowed: bool) -> bool:
    """The send rule above; ``still_allowed`` is the live answer for ``user_id``."""
    if user_id is not None:
        return sync_allowed and still_allowed
    if has_anonymous_id:
        return sync_allowed
    return True


CONSENT_EVENT = "Consent Updated"
_RECORD_FIELDS = ("messageId", "type", "event", "userId", "timestamp", "receivedAt", "storeId", "channel")
_RECORD_PROPERTIES = ("categoryPreferences", "consentSource", "noticeVersion")


def consent_record(body: str) -> str:
    """A journaled ``Consent Updated`` envelope cut down to the consent record itself: who (the
    token), what they chose, where and when — no anonymousId, context or other properties."""
    data = json.loads(body)
    record = {k: data[k] for k in _RECORD_FIELDS if k in data}
    props = data.get("properties", {})
    record["properties"] = {k: props[k] for k in _RECORD_PROPERTIES if k in props}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)
