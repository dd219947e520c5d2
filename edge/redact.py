"""Scrub raw identifiers out of text that is kept for inspection (dead letters, error details).

Dead letters keep an excerpt of what was refused so an operator can see *why*; the excerpt must
not become a back door for the raw identifiers the privacy contract keeps off the disk. Anything
that looks like an e-mail address, a phone number or a card/loyalty number is replaced.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "scrub", "scrub_bytes"]

REDACTED = "[redacted]"

_PATTERNS = (
    re.compile(r"[^\s\"'<>@,;:]{1,64}@[^\s\"'<>@,;:]{1,255}"),  # e-mail-like, even malformed
    re.compile(r"\+?\d[\d \-().]{5,}\d"),  # phone- or loyalty-number-like digit runs
)


def scrub(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def scrub_bytes(payload: bytes, limit: int = 512) -> str:
    """A printable, scrubbed excerpt of at most ``limit`` characters of ``payload``."""
    text = payload[: limit * 4].decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return scrub(text)[:limit]
