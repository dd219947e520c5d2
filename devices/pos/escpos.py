"""The ESC/POS command table and a streaming scanner over a printer byte stream. Pure.

Every command a receipt printer line commonly carries is listed with the length of what follows
it — fixed parameters, a NUL-terminated list, or length-prefixed data (``GS ( k`` 2D codes,
``GS v 0`` raster images, ``ESC *`` bit images, ``GS 8 L`` / ``FS q`` NV graphics, both
``GS k`` barcode forms …) — so a command's parameters and data are skipped whole and never read
as text. Sources: Epson *ESC/POS Command Reference* (TM series), the CD5220/DLE real-time
commands where noted. Data of any length is skipped as it streams past, without buffering it.

:class:`CommandScanner` turns bytes into :class:`Token` s: runs of text bytes, known commands with
their parameter bytes, and ``UNKNOWN`` / ``MALFORMED`` commands (only the prefix and command
byte are known, so whatever follows is suspect: the receipt tap drops it up to the line end).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

__all__ = ["Action", "Command", "CommandScanner", "Token", "TokenKind"]

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
NUL = 0x00
_HEADER = 16  # parameter bytes kept with a token; longer data is skipped as it streams
_MAX_NUL_LIST = 256  # GS k form 1 carries at most 255 bytes, ESC D at most 32
_NEED_MORE = None
_MALFORMED = -1

Length = Callable[[bytes | bytearray, int, int], int | None]


class Action(Enum):
    """What a command means to the receipt tap beyond being skipped."""

    NONE = "none"
    INIT = "init"  # ESC @: a new receipt, default code page and country
    CUT = "cut"  # GS V, ESC i, ESC m: the receipt ends
    LINE = "line"  # feed commands print the line buffer
    COLUMN = "column"  # absolute/relative positioning: a column break
    CODE_PAGE = "code_page"  # ESC t n
    COUNTRY = "country"  # ESC R n


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    length: Length  # total bytes from the prefix on; None: need more bytes; -1: malformed
    action: Action = Action.NONE


def fixed(params: int) -> Length:
    return lambda data, i, n: 2 + params


def _u16(data: bytes | bytearray, at: int) -> int:
    return data[at] + 256 * data[at + 1]


def _prefixed16(header: int) -> Length:
    """``header`` bytes (prefix, command, function …) then pL pH, then pL + 256·pH bytes."""

    def length(data: bytes | bytearray, i: int, n: int) -> int | None:
        if i + header + 2 > n:
            return _NEED_MORE
        return header + 2 + _u16(data, i + header)

    return length


def _nul_list(header: int) -> Length:
    def length(data: bytes | bytearray, i: int, n: int) -> int | None:
        end = min(n, i + header + _MAX_NUL_LIST)
        for j in range(i + header, end):
            if data[j] == NUL:
                return j - i + 1
        return _MALFORMED if end - i - header >= _MAX_NUL_LIST else _NEED_MORE

    return length


def _bit_image(data: bytes | bytearray, i: int, n: int) -> int | None:  # ESC * m nL nH d…
    if i + 5 > n:
        return _NEED_MORE
    mode = data[i + 2]
    if mode not in (0, 1, 32, 33):
        return _MALFORMED
    return 5 + _u16(data, i + 3) * (1 if mode < 32 else 3)


def _raster(data: bytes | bytearray, i: int, n: int) -> int | None:  # GS v 0 m xL xH yL yH d…
    if i + 8 > n:
        return _NEED_MORE
    if data[i + 2] not in (0x30, 0):
        return _MALFORMED
    return 8 + _u16(data, i + 4) * _u16(data, i + 6)


def _graphics_large(data: bytes | bytearray, i: int, n: int) -> int | None:  # GS 8 L p1 p2 p3 p4 …
    if i + 7 > n:
        return _NEED_MORE
    if data[i + 2] != ord("L"):
        return _MALFORMED
    return 7 + int.from_bytes(data[i + 3 : i + 7], "little")


def _downloaded_image(data: bytes | bytearray, i: int, n: int) -> int | None:  # GS * x y d…(x·y·8)
    if i + 4 > n:
        return _NEED_MORE
    return 4 + data[i + 2] * data[i + 3] * 8


def _barcode(data: bytes | bytearray, i: int, n: int) -> int | None:
    """GS k m d1…dk NUL (m 0–6) or GS k m n d1…dn (m 65–79)."""
    if i + 3 > n:
        return _NEED_MORE
    system = data[i + 2]
    if system <= 6:
        return _nul_list(3)(data, i, n)
    if 65 <= system <= 79:
        return _NEED_MORE if i + 4 > n else 4 + data[i + 3]
    return _MALFORMED


def _cut(data: bytes | bytearray, i: int, n: int) -> int | None:  # GS V m [n]
    if i + 3 > n:
        return _NEED_MORE
    return 4 if data[i + 2] in (65, 66, 97, 98, 103, 104) else 3


def _user_characters(data: bytes | bytearray, i: int, n: int) -> int | None:
    """ESC & y c1 c2 [x d1…d(y·x)]×(c2 − c1 + 1) — at most ~3.5 KB, walked in place."""
    if i + 5 > n:
        return _NEED_MORE
    height, first, last = data[i + 2], data[i + 3], data[i + 4]
    if not 1 <= height <= 3 or not 32 <= first <= last <= 126:
        return _MALFORMED
    at = i + 5
    for _ in range(last - first + 1):
        if at >= n:
            return _NEED_MORE
        at += 1 + height * data[at]
    return at - i if at <= n else _NEED_MORE


def _nv_images(data: bytes | bytearray, i: int, n: int) -> int | None:
    """FS q n: only the header here; the scanner then skips n images of xL xH yL yH d…"""
    return 3 if i + 3 <= n else _NEED_MORE


def _dle_dc4(data: bytes | bytearray, i: int, n: int) -> int | None:  # DLE DC4 fn …
    if i + 3 > n:
        return _NEED_MORE
    sizes = {1: 5, 2: 5, 7: 4, 8: 10}
    return sizes.get(data[i + 2], _MALFORMED)


def _table(spec: dict[str, Length | tuple[Length, Action]]) -> dict[int, Command]:
    table: dict[int, Command] = {}
    for key, value in spec.items():
        length, action = value if isinstance(value, tuple) else (value, Action.NONE)
        table[ord(key) if len(key) == 1 else int(key, 16)] = Command(key, length, action)
    return table


_ESC = _table({
    "0c": fixed(0), " ": fixed(1), "!": fixed(1), "$": (fixed(2), Action.COLUMN), "%": fixed(1),
    "&": _user_characters, "(": _prefixed16(3), "*": _bit_image, "-": fixed(1), "2": fixed(0),
    "3": fixed(1), "<": fixed(0), "=": fixed(1), "?": fixed(1), "@": (fixed(0), Action.INIT),
    "B": fixed(2), "D": _nul_list(2), "E": fixed(1), "G": fixed(1), "J": (fixed(1), Action.LINE),
    "K": fixed(1), "L": fixed(0), "M": fixed(1), "R": (fixed(1), Action.COUNTRY), "S": fixed(0),
    "T": fixed(1), "U": fixed(1), "V": fixed(1), "W": fixed(8), "\\": (fixed(2), Action.COLUMN),
    "a": fixed(1), "c": fixed(2), "d": (fixed(1), Action.LINE), "e": (fixed(1), Action.LINE),
    "i": (fixed(0), Action.CUT), "m": (fixed(0), Action.CUT), "p": fixed(3), "r": fixed(1),
    "t": (fixed(1), Action.CODE_PAGE), "u": fixed(1), "v": fixed(0), "{": fixed(1),
})  # fmt: skip
_GS = _table({
    "!": fixed(1), "#": fixed(1), "$": (fixed(2), Action.COLUMN), "(": _prefixed16(3),
    "*": _downloaded_image, "/": fixed(1), ":": fixed(0), "8": _graphics_large, "B": fixed(1),
    "E": fixed(1), "H": fixed(1), "I": fixed(1), "L": fixed(2), "P": fixed(2), "T": fixed(1),
    "V": (_cut, Action.CUT), "W": fixed(2), "\\": fixed(2), "^": fixed(3), "a": fixed(1),
    "b": fixed(1), "c": fixed(0), "f": fixed(1), "g": fixed(4), "h": fixed(1), "k": _barcode,
    "r": fixed(1), "v": _raster, "w": fixed(1), "z": fixed(3),
})  # fmt: skip
_FS = _table({
    "!": fixed(1), "&": fixed(0), "(": _prefixed16(3), "-": fixed(1), ".": fixed(0), "2": fixed(74),
    "C": fixed(1), "S": fixed(2), "W": fixed(1), "p": fixed(2), "q": _nv_images,
})  # fmt: skip
_DLE = _table({"04": fixed(1), "05": fixed(1), "14": _dle_dc4})
_TABLES = {ESC: _ESC, GS: _GS, FS: _FS, DLE: _DLE}
_PREFIX = re.compile(rb"[\x10\x1b\x1c\x1d]")


class TokenKind(Enum):
    TEXT = "text"  # a run of bytes outside any command (printable or control); ``data`` holds them
    COMMAND = "command"  # a known command; ``data`` is its parameter bytes (not its bulk data)
    UNKNOWN = "unknown"  # ESC/GS/FS + a byte the table does not know
    MALFORMED = "malformed"  # a known command whose parameters make no sense


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    value: int = 0  # the prefix byte (commands)
    command: Command | None = None
    data: bytes = b""  # the text run, or prefix, command byte and parameters (at most _HEADER bytes)


class CommandScanner:
    """Incremental: ``feed`` bytes, get tokens; bulk data is skipped as it arrives."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._skip = 0  # bulk data bytes still to discard
        self._images_left = 0  # FS q: NV images still to skip
        self.skipped_bytes = 0

    @property
    def mid_command(self) -> bool:
        return bool(self._pending) or self._skip > 0 or self._images_left > 0

    def feed(self, chunk: bytes) -> Iterator[Token]:
        data = self._pending + chunk
        self._pending = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                self.skipped_bytes += step
                i += step
                continue
            if self._images_left:
                if i + 4 > n:
                    break
                self._images_left -= 1
                self._skip = _u16(data, i) * _u16(data, i + 2) * 8
                i += 4
                continue
            match = _PREFIX.search(data, i)
            j = match.start() if match else n
            if j > i:
                yield Token(TokenKind.TEXT, data=bytes(data[i:j]))
                i = j
                continue
            byte = data[i]
            table = _TABLES[byte]
            if i + 1 >= n:
                break
            command = table.get(data[i + 1])
            if command is None:
                if byte == DLE:  # a bare DLE is a control byte, not a command prefix
                    yield Token(TokenKind.TEXT, data=bytes([byte]))
                    i += 1
                    continue
                yield Token(TokenKind.UNKNOWN, byte, None, bytes(data[i : i + 2]))
                i += 2
                continue
            length = command.length(data, i, n)
            if length is None:
                break
            if length == _MALFORMED:
                yield Token(TokenKind.MALFORMED, byte, command, bytes(data[i : i + 3]))
                i += 2
                continue
            header_length = min(length, _HEADER)
            if i + header_length > n:  # parameters come first and are read whole
                break
            available = min(length, n - i)
            header = bytes(data[i : i + header_length])
            if command.length is _nv_images:
                self._images_left = data[i + 2]
            yield Token(TokenKind.COMMAND, byte, command, header)
            self._skip = length - available
            self.skipped_bytes += max(0, available - len(header))
            i += available
        self._pending = data[i:] if i < n and not self._skip else bytearray()
