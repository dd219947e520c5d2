"""The framed basket protocol a POS terminal speaks to the gateway (devices/README.md). Pure.

A frame is ``STX payload ETX CC``: STX = 0x02, ETX = 0x03, ``payload`` printable ASCII
(0x20–0x7E, at most 240 bytes) and ``CC`` the XOR of every payload byte as two upper-case hex
digits. The payload is one record, fields separated by ``|``:

    A|sku|qty|unit_price      item added        (qty a positive integer, price like 2.49)
    R|sku|qty|unit_price      item removed
    L|loyalty_number          loyalty card scanned (6–20 digits)
    C|order_id|total          order completed (total like 12.34)

:class:`FrameDecoder` takes a byte stream in arbitrary chunks, skips and counts garbage between
frames, and resynchronises on the next STX after a bad frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from devices.errors import ParseError

__all__ = [
    "ETX",
    "MAX_PAYLOAD",
    "STX",
    "BasketRecord",
    "FrameDecoder",
    "ItemAdded",
    "ItemRemoved",
    "LoyaltyCard",
    "OrderCompleted",
    "checksum",
    "encode_frame",
    "encode_record",
    "parse_record",
]

STX = 0x02
ETX = 0x03
MAX_PAYLOAD = 240
_SKU = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
_ORDER = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
_LOYALTY = re.compile(r"^\d{6,20}$")
_MONEY = re.compile(r"^-?\d{1,7}\.\d{2}$")


@dataclass(frozen=True, slots=True)
class ItemAdded:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class ItemRemoved:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class LoyaltyCard:
    loyalty_number: str = field(repr=False)  # an identifier: kept out of reprs and logs


@dataclass(frozen=True, slots=True)
class OrderCompleted:
    order_id: str
    total_cents: int


BasketRecord = ItemAdded | ItemRemoved | LoyaltyCard | OrderCompleted


def checksum(payload: bytes) -> int:
    value = 0
    for byte in payload:
        value ^= byte
    return value


def cents(text: str) -> int:
    if not _MONEY.match(text):
        raise ParseError("bad_amount", "an amount must look like 12.34")
    try:
        return int(Decimal(text) * 100)
    except InvalidOperation:
        raise ParseError("bad_amount", "an amount must look like 12.34") from None


def format_cents(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


def parse_record(payload: bytes) -> BasketRecord:
    """One frame's payload (between STX and ETX) into a record."""
    if not payload or len(payload) > MAX_PAYLOAD:
        raise ParseError("bad_length", f"payload is {len(payload)} bytes, expected 1–{MAX_PAYLOAD}")
    if any(b < 0x20 or b > 0x7E for b in payload):
        raise ParseError("bad_byte", "payload must be printable ASCII")
    kind, *fields = payload.decode("ascii").split("|")
    if kind in ("A", "R"):
        if len(fields) != 3:
            raise ParseError("bad_fields", f"record {kind} has {len(fields)} fields, expected 3")
        sku, qty, price = fields
        if not _SKU.match(sku):
            raise ParseError("bad_sku", "sku must be 1–40 of A-Z a-z 0-9 . _ -")
        if not qty.isdigit() or not 0 < int(qty) <= 9999 or len(qty) > 4:
            raise ParseError("bad_quantity", "quantity must be an integer 1–9999")
        record_type = ItemAdded if kind == "A" else ItemRemoved
        return record_type(sku, int(qty), cents(price))
    if kind == "L":
        if len(fields) != 1 or not _LOYALTY.match(fields[0]):
            raise ParseError("bad_loyalty", "loyalty number must be 6–20 digits")
        return LoyaltyCard(fields[0])
    if kind == "C":
        if len(fields) != 2:
            raise ParseError("bad_fields", f"record C has {len(fields)} fields, expected 2")
        if not _ORDER.match(fields[0]):
            raise ParseError("bad_order_id", "order id must be 1–40 of A-Z a-z 0-9 . _ -")
        return OrderCompleted(fields[0], cents(fields[1]))
    raise ParseError("unknown_record", f"record type {kind[:8]!r} is not known")


def encode_record(record: BasketRecord) -> bytes:
    if isinstance(record, ItemAdded | ItemRemoved):
        kind = "A" if isinstance(record, ItemAdded) else "R"
        text = f"{kind}|{record.sku}|{record.quantity}|{format_cents(record.unit_price_cents)}"
    elif isinstance(record, LoyaltyCard):
        text = f"L|{record.loyalty_number}"
    else:
        text = f"C|{record.order_id}|{format_cents(record.total_cents)}"
    return text.encode("ascii")


def encode_frame(record: BasketRecord) -> bytes:
    payload = encode_record(record)
    return bytes([STX]) + payload + bytes([ETX]) + f"{checksum(payload):02X}".encode("ascii")


@dataclass
class DecoderStats:
    frames: int = 0
    garbage_bytes: int = 0
    bad_frames: dict[str, int] = field(default_factory=dict)

    def bad(self, reason: str) -> None:
        self.bad_frames[reason] = self.bad_frames.get(reason, 0) + 1


class FrameDecoder:
    """Incremental decoder: ``feed`` any chunk, get the complete records it finished."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.stats = DecoderStats()

    def feed(self, chunk: bytes) -> list[BasketRecord]:
        self._buffer += chunk
        records: list[BasketRecord] = []
        buf = self._buffer
        while buf:
            start = buf.find(STX)
            if start < 0:
                self.stats.garbage_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.stats.garbage_bytes += start
                del buf[:start]
            end = buf.find(ETX, 1, MAX_PAYLOAD + 2)
            restart = buf.find(STX, 1, end if end >= 0 else MAX_PAYLOAD + 2)
            if restart > 0:  # a new frame began before this one ended: drop the broken one
                self.stats.bad("truncated")
                self.stats.garbage_bytes += restart
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) > MAX_PAYLOAD + 1:
                    self.stats.bad("too_long")
                    self.stats.garbage_bytes += 1
                    del buf[:1]
                    continue
                break  # wait for more bytes
            if len(buf) < end + 3:
                break  # checksum not here yet
            payload, digits = bytes(buf[1:end]), bytes(buf[end + 1 : end + 3])
            if digits.upper() != f"{checksum(payload):02X}".encode("ascii"):
                self.stats.bad("bad_checksum")
                del buf[: end + 1]  # the two bytes after ETX may already be the next frame
                continue
            del buf[: end + 3]
            try:
                records.append(parse_record(payload))
            except ParseError as exc:
                self.stats.bad(exc.reason)
                continue
            self.stats.frames += 1
        return records
