"""Verify QR sign-in tokens: Ed25519 signature, expiry, bounded lifetime, no replay.

The nonce cache is bounded: it evicts expired nonces first and, only if still full, the oldest
(counted in ``evicted_live``; size it above the sign-ins expected within one token lifetime).
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from devices.camera.protocol import SignInToken, parse_token
from devices.errors import ParseError, TokenRejected
from edge.component import Clock

__all__ = ["NonceCache", "TokenVerifier", "load_public_key"]


def load_public_key(text: str) -> Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key, base64 (standard or url-safe)."""
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("camera.qr_public_key must be a base64 32-byte Ed25519 public key") from exc


class NonceCache:
    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, int] = OrderedDict()  # nonce -> expiry, oldest first
        self.evicted_live = 0

    def add(self, nonce: str, expires_at_s: int, now_s: float) -> bool:
        """Remember ``nonce``; False if it was already seen (a replay)."""
        if nonce in self._seen:
            return False
        if len(self._seen) >= self.max_entries:
            for old in [n for n, exp in self._seen.items() if exp < now_s]:
                del self._seen[old]
        while len(self._seen) >= self.max_entries:
            self._seen.popitem(last=False)
            self.evicted_live += 1
        self._seen[nonce] = expires_at_s
        return True


class TokenVerifier:
    def __init__(
        self,
        public_key: Ed25519PublicKey,
        clock: Clock,
        *,
        max_lifetime_s: int = 300,
        leeway_s: int = 30,
        nonces: NonceCache | None = None,
    ) -> None:
        self._key = public_key
        self._clock = clock
        self.max_lifetime_s = max_lifetime_s
        self.leeway_s = leeway_s
        self.nonces = nonces or NonceCache()

    def verify(self, text: str) -> SignInToken:
        try:
            token = parse_token(text)
        except ParseError:
            raise TokenRejected("malformed") from None
        try:
            self._key.verify(token.signature, token.signed_bytes)
        except InvalidSignature:
            raise TokenRejected("bad_signature") from None
        now = self._clock()
        if token.expires_at_s + self.leeway_s < now:
            raise TokenRejected("expired")
        if token.expires_at_s - token.issued_at_s > self.max_lifetime_s or token.issued_at_s > now + self.leeway_s:
            raise TokenRejected("too_long_lived")
        if not self.nonces.add(token.nonce, token.expires_at_s + self.leeway_s, now):
            raise TokenRejected("replayed")
        return token
