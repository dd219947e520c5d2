"""Bytes for a 2×20 customer pole display, in the Epson or the CD5220 command set. Pure.

Two command sets cover nearly every pole display sold (most understand one, many both):

============ ======================================== ==========================================
             ``epson`` (ESC/POS customer display)     ``cd5220``
============ ======================================== ==========================================
initialise   ``ESC @``, ``US MD1`` (overwrite: no     ``ESC @``, ``ESC DC1`` (overwrite),
             scroll), ``US C 0`` (cursor off),        ``ESC _ 0`` (cursor off), ``ESC f n``
             ``ESC t n`` (code table), ``ESC R n``    (national set), ``CLR``
             (national set), ``CLR``
clear        ``CLR`` (0x0C)                           ``CLR`` (0x0C)
cursor       ``US $ x y`` (1-based)                   ``ESC l x y`` (1-based)
============ ======================================== ==========================================

Text is fitted to the display's character set: a character the selected table has is sent as
its byte; anything else is transliterated (``€`` → ``EUR`` where the table has no euro, ``é`` →
``e``) or becomes ``?``; then it is word-wrapped onto the rows and cut with ``..``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from devices.pos.charsets import (
    CD5220_COUNTRY_CODES,
    EPSON_COUNTRY_CODES,
    code_page_number,
    decoding_table,
)

__all__ = ["CLEAR", "DisplaySettings", "PoleDisplay", "render_offer", "to_display_ascii", "wrap"]

CLEAR = b"\x0c"
_REPLACEMENTS = {"€": "EUR", "£": "GBP", "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O",
                 "œ": "oe", "Œ": "OE", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
                 "…": "...", "×": "x"}  # fmt: skip


@dataclass(frozen=True)
class DisplaySettings:
    command_set: Literal["epson", "cd5220"] = "epson"
    code_page: str | None = "cp437"  # None: plain ASCII (the cd5220 set has no code tables)
    country: str = "usa"
    width: int = 20
    rows: int = 2


@dataclass(frozen=True)
class PoleDisplay:
    settings: DisplaySettings = DisplaySettings()
    _bytes_of: dict[str, int] = field(init=False, repr=False, compare=False)
    _all_ascii: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        code_page = self.settings.code_page if self.settings.command_set == "epson" else None
        table = decoding_table(code_page, self.settings.country)
        usable = [b for b in range(0x20, 0x100) if b != 0x7F and table[b] != "\ufffd"]
        object.__setattr__(self, "_bytes_of", {table[b]: b for b in reversed(usable)})
        object.__setattr__(self, "_all_ascii", all(chr(b) in self._bytes_of for b in range(0x20, 0x7F)))

    def initialise(self) -> bytes:
        s = self.settings
        if s.command_set == "cd5220":
            return b"\x1b@\x1b\x11\x1b_\x00\x1bf" + bytes([CD5220_COUNTRY_CODES[s.country]]) + CLEAR
        table = code_page_number(s.code_page) if s.code_page else 0
        return b"\x1b@\x1f\x01\x1fC\x00\x1bt" + bytes([table or 0, 0x1B, 0x52, EPSON_COUNTRY_CODES[s.country]]) + CLEAR

    def clear(self) -> bytes:
        return CLEAR

    def fit(self, text: str) -> str:
        """``text`` with only characters this display can show."""
        if text.isascii() and text.isprintable() and self._all_ascii:
            return text
        out = []
        for ch in text:
            if ch in self._bytes_of:
                out.append(ch)
            elif ch.isspace():
                out.append(" ")
            else:
                out.append(self._substitute(ch))
        return "".join(out)

    def _substitute(self, ch: str) -> str:
        candidates = [_REPLACEMENTS[ch]] if ch in _REPLACEMENTS else []
        candidates.append("".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)))
        for candidate in candidates:
            if candidate and all(c in self._bytes_of for c in candidate):
                return candidate
        return "?"

    def _cursor(self, row: int) -> bytes:
        command = b"\x1bl" if self.settings.command_set == "cd5220" else b"\x1f$"
        return command + bytes([1, row])

    def show(self, lines: list[str]) -> bytes:
        """Clear, then each line (already fitted and wrapped) at the start of its row."""
        out = bytearray(CLEAR)
        for row, line in enumerate(lines[: self.settings.rows], start=1):
            text = self.fit(line)[: self.settings.width].ljust(self.settings.width)
            out += self._cursor(row) + bytes(self._bytes_of[c] for c in text)
        return bytes(out)

    def offer(self, title: str, price_text: str | None = None) -> bytes:
        """An offer: the title wrapped on the rows, or the title on row 1 and the price on row 2."""
        width, rows = self.settings.width, self.settings.rows
        if price_text:
            first = wrap(self.fit(title), width, 1) if title.strip() else [""]
            return self.show([first[0], self.fit(price_text)])
        return self.show(wrap(self.fit(title), width, rows) or [""])


_ASCII = PoleDisplay(DisplaySettings(code_page=None))


def to_display_ascii(text: str) -> str:
    return _ASCII.fit(text)


def wrap(text: str, width: int = 20, rows: int = 2) -> list[str]:
    """Greedy word wrap onto ``rows`` rows of ``width``; the last row is cut if it overflows."""
    words = text.split()
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


def render_offer(title: str, price_text: str | None = None, width: int = 20) -> bytes:
    """The offer frame in plain ASCII with the Epson cursor commands."""
    display = _ASCII if width == 20 else PoleDisplay(DisplaySettings(code_page=None, width=width))
    return display.offer(title, price_text)
