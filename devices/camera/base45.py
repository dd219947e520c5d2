"""Base45 (RFC 9285): bytes as text in exactly the QR code alphanumeric alphabet. Pure.

QR alphanumeric mode stores two characters in 11 bits, so 2 bytes → 3 characters cost 16.5 bits
(3 % more than the bytes) where base64 in byte mode costs 32 bits: the same payload needs a
smaller, easier to read QR version.
"""

from __future__ import annotations

from devices.errors import ParseError

__all__ = ["ALPHABET", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        out += [ALPHABET[n % 45], ALPHABET[n // 45 % 45], ALPHABET[n // 2025]]
    if len(data) % 2:
        n = data[-1]
        out += [ALPHABET[n % 45], ALPHABET[n // 45]]
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Raises :class:`ParseError` (``malformed``) on a character or group that is not base45."""
    try:
        values = [_VALUE[c] for c in text]
    except KeyError:
        raise ParseError("malformed", "a character is not in the base45 alphabet") from None
    if len(values) % 3 == 1:
        raise ParseError("malformed", "base45 text has a dangling character")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        n = sum(v * 45**k for k, v in enumerate(group))
        if n > (0xFFFF if len(group) == 3 else 0xFF):
            raise ParseError("malformed", f"base45 group at character {i} is out of range")
        out += n.to_bytes(len(group) - 1, "big")
    return bytes(out)
