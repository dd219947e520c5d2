"""The loyalty sign-in QR token the store app shows. Pure: text in, :class:`SignInToken` out.

Two formats (devices/README.md), both signed with Ed25519 by the app backend's private key; the
gateway holds only the public key, so a compromised gateway cannot mint tokens. Verification
(signature, expiry, replay) is in :mod:`devices.camera.signin`.

* ``EQ2:<base45>`` — compact, the one to show: a 23–100 byte binary record in base45, so the whole
  text is in QR alphanumeric mode (135 characters with a UUID app id: QR version 5-L, 37×37
  modules). Layout::

      kind      1 byte   0x01: app id is a UUID (16 bytes follow); 0x02: UTF-8 app id, 1-byte length, 1–28 bytes
      issued    4 bytes  unix seconds, big-endian
      lifetime  2 bytes  seconds the token is valid after ``issued``, big-endian
      app id    16 bytes, or length + bytes
      signature 64 bytes Ed25519 over b"EQ2" + every byte before the signature

  Replay protection keys on the signature itself (a token is accepted once), so no nonce is
  carried; two codes shown within one second are the same code.
* ``EQ1.<payload>.<signature>`` — the first format, still accepted: base64url JSON
  ``{"appId", "exp", "iat", "nonce"}`` and the signature of the ASCII bytes ``EQ1.<payload>``
  (about 210 characters: QR version 9–10, too dense for a store camera at a distance).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.camera.base45 import b45decode, b45encode
from devices.errors import ParseError

__all__ = ["COMPACT_PREFIX", "PREFIX", "SignInToken", "encode_compact_token", "encode_token", "parse_token"]

PREFIX = "EQ1"
COMPACT_PREFIX = "EQ2:"
_KIND_UUID, _KIND_TEXT = 0x01, 0x02
_MAX_TEXT_APP_ID = 28  # bytes: keeps the code at QR version 5-L
MAX_TOKEN = 512
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass(frozen=True, slots=True)
class SignInToken:
    app_id: str = field(repr=False)  # an identifier: kept out of reprs and logs
    issued_at_s: int
    expires_at_s: int
    nonce: str
    signed_bytes: bytes = field(repr=False)
    signature: bytes = field(repr=False)


def _b64decode(text: str, what: str) -> bytes:
    if not _B64URL.match(text):
        raise ParseError("malformed", f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ParseError("malformed", f"{what} is not base64url") from None


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_token(text: str) -> SignInToken:
    if len(text) > MAX_TOKEN:
        raise ParseError("too_long", f"token is {len(text)} characters, at most {MAX_TOKEN}")
    if text.startswith(COMPACT_PREFIX):
        return _parse_compact(text)
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ParseError("malformed", f"token must be {PREFIX}.<payload>.<signature>")
    payload = _b64decode(parts[1], "payload")
    signature = _b64decode(parts[2], "signature")
    if len(signature) != 64:
        raise ParseError("malformed", "signature must be 64 bytes (Ed25519)")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ParseError("malformed", "payload is not JSON") from None
    if not isinstance(data, dict):
        raise ParseError("malformed", "payload must be a JSON object")
    app_id, exp, iat, nonce = data.get("appId"), data.get("exp"), data.get("iat"), data.get("nonce")
    if not isinstance(app_id, str) or not 0 < len(app_id) <= 128:
        raise ParseError("malformed", "appId must be a string of 1–128 characters")
    exp, iat = _unix_seconds("exp", exp), _unix_seconds("iat", iat)
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ParseError("malformed", "nonce must be 8–64 base64url characters")
    return SignInToken(app_id, iat, exp, nonce, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def _unix_seconds(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
        raise ParseError("malformed", f"{name} must be unix seconds")
    return value


def encode_token(app_id: str, issued_at_s: int, expires_at_s: int, nonce: str, sign: object) -> str:
    """Build a token; ``sign`` is a callable bytes → 64-byte signature (the app backend's key)."""
    payload = json.dumps(
        {"appId": app_id, "exp": expires_at_s, "iat": issued_at_s, "nonce": nonce}, separators=(",", ":")
    ).encode("utf-8")
    head = f"{PREFIX}.{b64encode(payload)}"
    signature = sign(head.encode("ascii"))  # type: ignore[operator]
    return f"{head}.{b64encode(signature)}"


def _parse_compact(text: str) -> SignInToken:
    record = b45decode(text[len(COMPACT_PREFIX) :])
    if len(record) < 1 + 4 + 2 + 2 + 64:
        raise ParseError("malformed", f"compact token is {len(record)} bytes, too short")
    kind = record[0]
    issued = int.from_bytes(record[1:5], "big")
    lifetime = int.from_bytes(record[5:7], "big")
    if kind == _KIND_UUID:
        end = 7 + 16
        app_id = str(uuid.UUID(bytes=record[7:end]))
    elif kind == _KIND_TEXT:
        length = record[7]
        end = 8 + length
        if not 1 <= length <= _MAX_TEXT_APP_ID:
            raise ParseError("malformed", f"app id length {length} is not 1–{_MAX_TEXT_APP_ID}")
        try:
            app_id = record[8:end].decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("malformed", "app id is not UTF-8") from None
    else:
        raise ParseError("malformed", f"compact token kind 0x{kind:02x} is not known")
    if len(record) != end + 64:
        raise ParseError("malformed", f"compact token is {len(record)} bytes, expected {end + 64}")
    signature = record[end:]
    return SignInToken(app_id, issued, issued + lifetime, signature[:16].hex(), b"EQ2" + record[:end], signature)


def encode_compact_token(app_id: str, issued_at_s: int, expires_at_s: int, sign: Callable[[bytes], bytes]) -> str:
    """Build an ``EQ2:`` token; ``sign`` is the app backend's Ed25519 signing function."""
    try:
        head = bytes([_KIND_UUID]) + _times(issued_at_s, expires_at_s) + uuid.UUID(app_id).bytes
        if str(uuid.UUID(app_id)) != app_id:
            raise ValueError
    except ValueError:
        raw = app_id.encode("utf-8")
        if not 1 <= len(raw) <= _MAX_TEXT_APP_ID:
            raise ValueError(f"an app id is a UUID or 1–{_MAX_TEXT_APP_ID} UTF-8 bytes") from None
        head = bytes([_KIND_TEXT]) + _times(issued_at_s, expires_at_s) + bytes([len(raw)]) + raw
    return COMPACT_PREFIX + b45encode(head + sign(b"EQ2" + head))


def _times(issued_at_s: int, expires_at_s: int) -> bytes:
    lifetime = expires_at_s - issued_at_s
    if not 0 <= issued_at_s < 2**32 or not 0 < lifetime < 2**16:
        raise ValueError("issued must be unix seconds and the lifetime 1–65535 s")
    return issued_at_s.to_bytes(4, "big") + lifetime.to_bytes(2, "big")
