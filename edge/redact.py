"""Scrub raw identifiers out of text that is kept for inspection (dead letters, error details).

Dead letters keep an excerpt of what was refused so an operator can see *why*; the excerpt must
not become a back door for what the privacy contract keeps off the disk. A JSON payload is
walked and every value under an identifier-bearing key (``identifiers``, ``traits``, ``email``,
``phone``, ``loyaltyId``, ``appId``, ``userId`` …) is replaced; then, JSON or not, anything that
looks like an e-mail address, a phone/card/loyalty number or a customer token is replaced too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge.guard import skeleton

__all__ = ["REDACTED", "scrub", "scrub_bytes"]

REDACTED = "[redacted]"

_SENSITIVE_KEYS = frozenset(
    {"identifiers", "traits", "email", "phone", "loyaltyid", "loyalty", "appid", "userid",
     "anonymousid", "apppresencekey", "token", "card"}
)  # fmt: skip
_PATTERNS = (
    re.compile(r"[^\s\"'<>@,;:]{1,64}@[^\s\"'<>@,;:]{1,255}"),  # e-mail-like, even malformed
    re.compile(r"\+?\d[\d \-().]{3,}\d"),  # phone-, card- or loyalty-number-like digit runs (>= 5 digits)
    re.compile(r"ct_[0-9a-f]{8,}"),  # customer tokens
)


def scrub(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in _SENSITIVE_KEYS else _walk(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    return value


def scrub_bytes(payload: bytes, limit: int = 512) -> str:
    """A printable, scrubbed excerpt of at most ``limit`` characters of ``payload``."""
    try:
        text = json.dumps(_walk(json.loads(payload)), ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON: keep only its shape (see edge.guard.skeleton)
        return skeleton(payload, limit)
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text[: limit * 4])
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return scrub(text)[:limit]
