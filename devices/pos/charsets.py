"""Character tables shared by the receipt tap and the pole display. Pure.

``ESC t n`` numbers follow Epson's ESC/POS character code tables (the numbering the
escpos-printer-db profiles, and so python-escpos, use); only tables Python has a codec for are
listed — text in any other table decodes to U+FFFD, never to another table's letters.
``ESC R n`` (Epson) and ``ESC f n`` (CD5220 displays) swap a few ASCII positions for national
letters; the sets a store is likely to meet are listed.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from functools import cache

__all__ = [
    "CODE_PAGES",
    "COUNTRIES",
    "CD5220_COUNTRY_CODES",
    "EPSON_COUNTRY_CODES",
    "code_page_number",
    "decoding_table",
    "is_single_byte_codec",
    "text_decoder",
]

#: ESC t n → Python codec.
CODE_PAGES: dict[int, str] = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 13: "cp857", 14: "cp737",
    15: "iso8859_7", 16: "cp1252", 17: "cp866", 18: "cp852", 19: "cp858", 21: "cp874",
    32: "cp720", 33: "cp775", 34: "cp855", 35: "cp861", 36: "cp862", 37: "cp864", 38: "cp869",
    39: "iso8859_2", 40: "iso8859_15", 44: "cp1125", 45: "cp1250", 46: "cp1251", 47: "cp1253",
    48: "cp1254", 49: "cp1255", 50: "cp1256", 51: "cp1257", 52: "cp1258",
}  # fmt: skip

#: National replacements of ASCII positions (Epson ESC/POS international character sets).
COUNTRIES: dict[str, dict[int, str]] = {
    "usa": {},
    "france": {0x40: "à", 0x5B: "°", 0x5C: "ç", 0x5D: "§", 0x7B: "é", 0x7C: "ù", 0x7D: "è", 0x7E: "¨"},
    "germany": {0x40: "§", 0x5B: "Ä", 0x5C: "Ö", 0x5D: "Ü", 0x7B: "ä", 0x7C: "ö", 0x7D: "ü", 0x7E: "ß"},
    "uk": {0x23: "£"},
}
EPSON_COUNTRY_CODES: dict[str, int] = {"usa": 0, "france": 1, "germany": 2, "uk": 3}  # ESC R n
CD5220_COUNTRY_CODES: dict[str, int] = {
    "usa": ord("A"),
    "france": ord("F"),
    "germany": ord("G"),
    "uk": ord("U"),
}  # ESC f n


def is_single_byte_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
        return len(bytes(range(256)).decode(name, errors="replace")) == 256
    except LookupError:
        return False


def code_page_number(codec: str) -> int | None:
    """The ``ESC t`` number of a codec name (``cp858`` → 19), ``None`` if it has none."""
    wanted = codecs.lookup(codec).name
    for number, name in CODE_PAGES.items():
        if codecs.lookup(name).name == wanted:
            return number
    return None


@cache
def text_decoder(codec: str | None, country: str = "usa") -> Callable[[bytes], str]:
    """bytes → text as printed in ``codec`` under ``country``'s national set (U+FFFD where unknown)."""
    table = decoding_table(codec, country)
    latin1_to_printed = {b: table[b] for b in range(256) if table[b] != chr(b)}
    return lambda raw: raw.decode("latin-1").translate(latin1_to_printed)


@cache
def decoding_table(codec: str | None, country: str = "usa") -> tuple[str, ...]:
    """256 one-character strings: byte → printed character (U+FFFD where unknown)."""
    if codec is None:
        table = [chr(b) if b < 0x80 else "\ufffd" for b in range(256)]
    else:
        table = list(bytes(range(256)).decode(codec, errors="replace"))
    for position, char in COUNTRIES.get(country, {}).items():
        table[position] = char
    return tuple(table)
