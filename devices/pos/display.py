"""Bytes for a 2×20 customer pole display (ESC/POS-compatible command set). Pure.

Commands (Epson DM-D / ESC/POS customer display mode, also understood by most VFD pole displays):
``ESC @`` initialise, ``0x0C`` clear screen, ``US $ x y`` move the cursor to column x, row y
(1-based), then plain ASCII text. Text is transliterated to printable ASCII (``é`` → ``e``;
anything without an ASCII form → ``?``), word-wrapped onto the two rows and cut to the width.
"""

from __future__ import annotations

import unicodedata

__all__ = ["CLEAR", "INIT", "render_lines", "render_offer", "to_display_ascii", "wrap"]

INIT = b"\x1b\x40"
CLEAR = b"\x0c"
_CURSOR = b"\x1f\x24"  # US $ x y
_REPLACEMENTS = {"€": "EUR", "£": "GBP", "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O",
                 "œ": "oe", "Œ": "OE", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
                 "…": "...", "×": "x"}  # fmt: skip


def to_display_ascii(text: str) -> str:
    out = []
    for ch in text:
        if ch in _REPLACEMENTS:
            out.append(_REPLACEMENTS[ch])
            continue
        if 0x20 <= ord(ch) <= 0x7E:
            out.append(ch)
            continue
        if ch.isspace():
            out.append(" ")
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and all(0x20 <= ord(c) <= 0x7E for c in base) else "?")
    return "".join(out)


def wrap(text: str, width: int = 20, rows: int = 2) -> list[str]:
    """Greedy word wrap onto ``rows`` rows of ``width``; the last row is cut if it overflows."""
    words = to_display_ascii(text).split()
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while len(current) > width:
            lines.append(current[:width])
            current = current[width:]
    if current:
        lines.append(current)
    if len(lines) > rows:
        last = " ".join(lines[rows - 1 :])
        lines = lines[: rows - 1] + [last[: width - 2].rstrip() + ".." if len(last) > width else last]
    return lines


def render_lines(lines: list[str], width: int = 20) -> bytes:
    out = bytearray(CLEAR)
    for row, line in enumerate(lines, start=1):
        text = to_display_ascii(line)[:width].ljust(width)
        out += _CURSOR + bytes([1, row]) + text.encode("ascii")
    return bytes(out)


def render_offer(title: str, price_text: str | None = None, width: int = 20) -> bytes:
    """An offer: the title wrapped on row 1 (and 2), or title on row 1 and price on row 2."""
    if price_text:
        return render_lines([wrap(title, width, 1)[0] if title.strip() else "", price_text], width)
    return render_lines(wrap(title, width, 2) or [""], width)
