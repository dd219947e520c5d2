"""The loyalty sign-in QR token the store app shows. Pure: text in, :class:`SignInToken` out.

Format (devices/README.md): ``EQ1.<payload>.<signature>``, both parts base64url without padding.
``payload`` is compact JSON ``{"appId": str, "exp": int unix seconds, "iat": int, "nonce": str}``;
``signature`` is the Ed25519 signature (64 bytes) of the ASCII bytes ``EQ1.<payload>``, made by
the app backend's private key; the gateway holds only the public key, so a compromised gateway
cannot mint tokens. Verification (signature, expiry, replay) is in :mod:`devices.camera.signin`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from devices.errors import ParseError

__all__ = ["PREFIX", "SignInToken", "encode_token", "parse_token"]

PREFIX = "EQ1"
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
    for name, value in (("exp", exp), ("iat", iat)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
            raise ParseError("malformed", f"{name} must be unix seconds")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ParseError("malformed", "nonce must be 8–64 base64url characters")
    return SignInToken(app_id, iat, exp, nonce, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def encode_token(app_id: str, issued_at_s: int, expires_at_s: int, nonce: str, sign: object) -> str:
    """Build a token; ``sign`` is a callable bytes → 64-byte signature (the app backend's key)."""
    payload = json.dumps(
        {"appId": app_id, "exp": expires_at_s, "iat": issued_at_s, "nonce": nonce}, separators=(",", ":")
    ).encode("utf-8")
    head = f"{PREFIX}.{b64encode(payload)}"
    signature = sign(head.encode("ascii"))  # type: ignore[operator]
    return f"{head}.{b64encode(signature)}"
