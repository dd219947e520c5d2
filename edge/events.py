"""The typed event envelope (DESIGN.md, "Events") and its parser.

:func:`parse_event` turns one untrusted JSON object from a device into an :class:`Event`, or
raises :class:`~edge.errors.InvalidEvent` with a stable ``reason`` label and a detail naming the
field. It never trusts ``storeId``/``deviceId``/``channel`` from the body: they come from the
authenticated :class:`~edge.bus.Source`; a body claiming another device is refused. Unknown
fields are kept. Details name fields, never echo values (they may be raw identifiers).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.bus import Source
from edge.errors import InvalidEvent
from edge.ids import derived_uuid7

__all__ = [
    "CALL_TYPES",
    "EVENT_NAMES",
    "IN_STORE_EVENTS",
    "MAX_BACKDATE_DAYS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "SEGMENT_ECOMMERCE_EVENTS",
    "TOKEN_PATTERN",
    "Event",
    "decode_document",
    "decode_payload",
    "iso_ms",
    "parse_event",
]

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_ID_LENGTH = 128

#: A customer token: ``ct_`` + 32 lowercase hex characters (a truncated keyed HMAC).
TOKEN_PATTERN = re.compile(r"^ct_[0-9a-f]{32}$")

SEGMENT_ECOMMERCE_EVENTS = frozenset(
    {
        "Products Searched", "Product List Viewed", "Product List Filtered",
        "Promotion Viewed", "Promotion Clicked", "Product Clicked", "Product Viewed",
        "Product Added", "Product Removed", "Cart Viewed", "Checkout Started",
        "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered",
        "Order Updated", "Order Completed", "Order Refunded", "Order Cancelled",
        "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
        "Product Added to Wishlist", "Product Removed from Wishlist", "Product Shared",
        "Cart Shared", "Product Reviewed",
    }
)  # fmt: skip
IN_STORE_EVENTS = frozenset(
    {
        "Zone Entered", "Zone Exited", "Audience Measured", "Offer Viewed", "Offer Clicked",
        "Offer Redeemed", "Offer Exposed", "Consent Updated", "Customer Identified",
        "Device Status", "Customer Erased",
    }
)  # fmt: skip
EVENT_NAMES = SEGMENT_ECOMMERCE_EVENTS | IN_STORE_EVENTS

#: The Segment call types (DESIGN.md, "Events").
CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")
# Properties some events cannot do without: name -> {property: expected type(s)}. The Segment
# e-commerce spec v2 requires none of its own; an event about one product must name it (``sku``
# or ``product_id``: see _PRODUCT_EVENTS), and the in-store events need what they are about.
_PRODUCT_EVENTS = frozenset({"Product Viewed", "Product Added", "Product Removed"})
_TYPED: Mapping[str, tuple[type, ...]] = {"sku": (str,), "product_id": (str,), "products": (list,)}
_REQUIRED: Mapping[str, Mapping[str, tuple[type, ...]]] = {
    "Zone Entered": {"zoneId": (str,)},
    "Zone Exited": {"zoneId": (str,)},
    "Audience Measured": {"count": (int,)},
    "Offer Viewed": {"offerId": (str,)},
    "Offer Clicked": {"offerId": (str,)},
    "Offer Redeemed": {"offerId": (str,)},
    "Consent Updated": {"categoryPreferences": (dict,)},
    "Device Status": {"status": (str,)},
}
#: How far back a device's ``timestamp`` may put what happened (``Event.occurred_ms``): past the
#: journal's default retention (395 days), a purchase would be pruned at once anyway.
MAX_BACKDATE_DAYS = 400
_NUMERIC = ("price", "quantity", "revenue", "total", "value", "count", "dwellSeconds")
_GATEWAY_FIELDS = ("storeId", "deviceId", "channel", "receivedAt")
_RAW_TRAITS = ("email", "phone", "loyaltyId", "appId")


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event. ``body`` is the full envelope as it is journaled and synced."""

    message_id: str
    type: str
    name: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp: str
    received_ms: int
    source: Source
    body: dict[str, Any]

    @property
    def occurred_ms(self) -> int:
        """When it happened by the device's ``timestamp`` (a till uploading its receipts after an
        outage, a back-office import), never after it was received nor more than
        :data:`MAX_BACKDATE_DAYS` before: what purchase histories and repurchase cycles count in."""
        try:
            at = _parse_time(self.timestamp)
        except InvalidEvent:
            return self.received_ms
        return max(self.received_ms - MAX_BACKDATE_DAYS * 86_400_000, min(at, self.received_ms))

    @property
    def consent(self) -> dict[str, bool]:
        prefs = self.body.get("context", {}).get("consent", {}).get("categoryPreferences", {})
        return {k: v is True for k, v in prefs.items()}

    def encoded(self) -> str:
        return _encode(self.body)

    def row(self) -> tuple[Any, ...]:
        text = self.encoded()
        return (
            self.message_id,
            self.type,
            self.name,
            self.user_id,
            self.anonymous_id,
            self.source.device_id,
            self.source.channel,
            self.timestamp,
            self.received_ms,
            1 if self.consent.get("cdp_sync") else 0,
            len(text.encode("utf-8")),
            text,
        )


def decode_payload(payload: bytes, *, max_bytes: int = MAX_BATCH_BYTES) -> list[Any]:
    """Bytes from MQTT/HTTP → a list of raw event objects (one object, an array or a batch)."""
    return decode_document(payload, max_bytes=max_bytes)[1]


def decode_document(payload: bytes, *, max_bytes: int = MAX_BATCH_BYTES) -> tuple[Any, list[Any]]:
    """Like :func:`decode_payload`, also returning the decoded document itself (a batch's own
    fields, such as its ``context``, are in it)."""
    if len(payload) > max_bytes:
        raise InvalidEvent("too_large", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        if isinstance(payload, bytes | bytearray):  # as json.loads does, with one decoder for all
            data = _DECODER.decode(payload.decode(json.detect_encoding(payload), "surrogatepass"))
        else:
            data = json.loads(payload, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidEvent("invalid_json", f"payload is not JSON ({type(exc).__name__})") from None
    except ValueError:  # NaN/Infinity, or an integer of more digits than Python converts (4,300)
        raise InvalidEvent("bad_number", "numbers must be finite and of at most 4,300 digits") from None
    document = data
    if isinstance(data, dict) and "batch" in data:
        data = data["batch"]
        if not isinstance(data, list):
            raise InvalidEvent("wrong_type", "batch must be an array")
    items = data if isinstance(data, list) else [data]
    if len(items) > MAX_BATCH_EVENTS:
        raise InvalidEvent("too_many", f"batch of {len(items)} events exceeds {MAX_BATCH_EVENTS}")
    return document, items


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# json.loads(..., parse_constant=…) builds a decoder per call (4 % of a drain's CPU): one will do
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _compact_encoder() -> Callable[[Any], str]:
    """``json.dumps(body, separators=(",", ":"), ensure_ascii=False)``, built once.

    ``json.dumps`` with options builds a ``JSONEncoder`` per call, and the encoder checks for
    cycles; the journal writer encodes every event (≈ 5 µs of its ≈ 18 per event), and a body
    is a tree parsed from JSON. So: the stdlib's C encoder made once, without the cycle check
    (a cycle would end in RecursionError, not a loop); the public encoder where there is no C
    one. ``tests/edge/test_events.py`` holds it to ``json.dumps`` byte for byte."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    chunks = make(None, _unencodable, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda body: "".join(chunks(body, 0))


def _unencodable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = _compact_encoder()


def parse_event(
    raw: Any, source: Source, received_ms: int, raw_size: int | None = None, received_iso: str | None = None
) -> Event:
    """Validate one raw event from ``source``; raises InvalidEvent naming what was wrong.

    ``raw_size`` (an upper bound of the event's JSON size, e.g. its payload's length) and
    ``received_iso`` spare the hot path a re-serialisation and a date format per event.
    """
    if not isinstance(raw, dict):
        raise InvalidEvent("wrong_type", "an event must be a JSON object")
    size = raw_size if raw_size is not None else _size(raw)
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent("too_large", f"event of {size} bytes exceeds {MAX_EVENT_BYTES}")
    for key in ("storeId", "deviceId"):
        claimed = raw.get(key)
        expected = source.store_id if key == "storeId" else source.device_id
        if claimed is not None and claimed != expected:
            raise InvalidEvent("identity_mismatch", f"{key} in the body is not the sender's")
    kind = raw.get("type", "track")
    if kind not in CALL_TYPES:
        raise InvalidEvent("wrong_type", f"type must be one of {', '.join(CALL_TYPES)}")
    name = raw.get("event")
    if kind == "track":
        if not isinstance(name, str):
            raise InvalidEvent("missing_field", "event (the event name) is required for track")
        if name not in EVENT_NAMES:
            raise InvalidEvent("unknown_event", f"event name {name[:40]!r} is not a known event")
    elif name is not None:
        raise InvalidEvent("wrong_type", f"{kind} calls carry no event name")
    _check_call(kind, raw)
    properties = raw.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidEvent("wrong_type", "properties must be an object")
    context = raw.get("context", {})
    if not isinstance(context, dict):
        raise InvalidEvent("wrong_type", "context must be an object")
    if not isinstance(raw.get("traits", {}), dict) or not isinstance(context.get("traits", {}), dict):
        raise InvalidEvent("wrong_type", "traits must be an object")
    if "identifiers" in properties or _raw_traits(raw.get("traits")) or _raw_traits(context.get("traits")):
        # The identity stage replaces raw identifiers by a token before this point; if they are
        # still here, nothing pseudonymised them and they must not reach the journal.
        raise InvalidEvent("raw_identifier", "raw identifiers were not pseudonymised; is identity enabled?")
    _check_properties(name, properties)
    user_id = _optional_id(raw, "userId")
    if user_id is not None and not TOKEN_PATTERN.match(user_id):
        raise InvalidEvent(
            "raw_identifier",
            "userId must be a customer token (ct_…); send raw identifiers"
            " as properties.identifiers so the gateway can pseudonymise them",
        )
    anonymous_id = _optional_id(raw, "anonymousId")
    if kind == "identify" and user_id is None and anonymous_id is None:
        raise InvalidEvent("missing_field", "identify needs userId or anonymousId")
    timestamp = raw.get("timestamp")
    received_at = received_iso or _iso(received_ms)
    if timestamp is None:
        event_ms = received_ms
        timestamp = received_at
    else:
        event_ms = _parse_time(timestamp)
    message_id = raw.get("messageId")
    if message_id is None:
        message_id = derived_uuid7(
            event_ms,
            source.store_id.encode(),
            source.device_id.encode(),
            json.dumps(raw, sort_keys=True, separators=(",", ":")).encode(),
        )
    elif not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_ID_LENGTH:
        raise InvalidEvent("wrong_type", f"messageId must be a string of 1–{MAX_ID_LENGTH} chars")
    body = {k: v for k, v in raw.items() if k not in _GATEWAY_FIELDS}
    body.update(
        messageId=message_id,
        type=kind,
        timestamp=timestamp,
        receivedAt=received_at,
        storeId=source.store_id,
        deviceId=source.device_id,
        channel=source.channel,
        properties=properties,
        context=context,
    )
    return Event(message_id, kind, name, user_id, anonymous_id, timestamp, received_ms, source, body)


def _raw_traits(traits: Any) -> bool:
    if not isinstance(traits, dict):
        return False
    return any(k in traits and not (isinstance(traits[k], str) and TOKEN_PATTERN.match(traits[k])) for k in _RAW_TRAITS)


def _check_call(kind: str, raw: Mapping[str, Any]) -> None:
    """What the page, screen, group and alias calls need beyond the envelope."""
    if kind in ("page", "screen"):
        for key in ("name", "category"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise InvalidEvent("wrong_type", f"{key} of a {kind} call must be a string of at most 200 chars")
    elif kind == "group":
        if _optional_id(raw, "groupId") is None:
            raise InvalidEvent("missing_field", "groupId is required for group")
    elif kind == "alias":
        if _optional_id(raw, "previousId") is None or raw.get("userId") is None:
            raise InvalidEvent("missing_field", "alias needs userId and previousId")


def _check_properties(name: str | None, properties: Mapping[str, Any]) -> None:
    for prop, types in _TYPED.items():
        value = properties.get(prop)
        if value is not None and not isinstance(value, types):
            raise InvalidEvent("wrong_type", f"properties.{prop} has the wrong type")
    if name in _PRODUCT_EVENTS and properties.get("sku") is None and properties.get("product_id") is None:
        raise InvalidEvent("missing_field", f"properties.sku (or product_id) is required for {name}")
    for prop, types in _REQUIRED.get(name or "", {}).items():
        value = properties.get(prop)
        if value is None:
            raise InvalidEvent("missing_field", f"properties.{prop} is required for {name}")
        if not isinstance(value, types) or isinstance(value, bool):
            raise InvalidEvent("wrong_type", f"properties.{prop} has the wrong type for {name}")
    for prop in _NUMERIC:
        value = properties.get(prop)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidEvent("wrong_type", f"properties.{prop} must be a number")
        if isinstance(value, float) and value != value:  # NaN never round-trips
            raise InvalidEvent("wrong_type", f"properties.{prop} must be a finite number")


def _optional_id(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidEvent("wrong_type", f"{key} must be a string of 1–{MAX_ID_LENGTH} chars")
    return value


def _parse_time(value: Any) -> int:
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidEvent("wrong_type", "timestamp must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent("bad_timestamp", "timestamp is not ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        raise InvalidEvent("bad_timestamp", "timestamp is out of range") from None


def iso_ms(unix_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, as every gateway timestamp is written."""
    return _iso(unix_ms)


@functools.lru_cache(maxsize=64)  # a busy gateway stamps many events within one millisecond
def _iso(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _size(raw: Mapping[str, Any]) -> int:
    try:
        return len(json.dumps(raw, separators=(",", ":")).encode("utf-8", errors="replace"))
    except (TypeError, ValueError, RecursionError):
        raise InvalidEvent("wrong_type", "event is not serialisable JSON") from None
