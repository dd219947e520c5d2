"""UUIDv7 message ids (RFC 9562): time-ordered, so journal and sinks index them cheaply.

Python 3.11 has no ``uuid.uuid7``. :func:`derived_uuid7` gives a *deterministic* UUIDv7 for an
event a device sent without a ``messageId``: the time bits come from the event's timestamp and
the random bits from a hash of the device and payload, so a QoS 1 redelivery of the same bytes
maps to the same id and is de-duplicated like any other.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid

__all__ = ["derived_uuid7", "uuid7"]


def _compose(unix_ms: int, rand: bytes) -> str:
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (int.from_bytes(rand[:2], "big") & 0x0FFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= int.from_bytes(rand[2:10], "big") & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


def uuid7(unix_ms: int | None = None) -> str:
    return _compose(time.time_ns() // 1_000_000 if unix_ms is None else unix_ms, os.urandom(10))


def derived_uuid7(unix_ms: int, *parts: bytes) -> str:
    digest = hashlib.sha256(b"\x00".join(parts)).digest()
    return _compose(unix_ms, digest)
