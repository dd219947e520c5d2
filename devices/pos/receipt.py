"""The receipt tap: an ESC/POS printer byte stream into receipts. Pure.

The gateway listens on the printer line (RX only, see hardware/README.md) and sees what the POS
prints. Commands understood (Epson ESC/POS reference): ``ESC @`` initialise (starts a receipt),
``ESC ! n`` print mode, ``ESC E n`` emphasis, ``ESC - n`` underline, ``ESC a n`` justification,
``ESC d n`` feed n lines, ``GS ! n`` character size, ``GS V m [n]`` cut (ends the receipt), ``LF``
line end; ``CR`` is ignored. Other ESC/GS commands with a known length are skipped; an unknown
one raises :class:`ParseError` in :func:`parse_receipt` and is counted and skipped by
:class:`ReceiptDecoder`.

Text lines are read with the layout documented in devices/README.md:

    2 x Oat Milk 1L  SKU:OAT-1L      3.98     quantity, name, optional SKU, line amount
    Oat Milk 1L                      1.99     name and amount (quantity 1)
    TOTAL                           12.34
    LOYALTY: 1234567890                       loyalty number (6–20 digits)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from devices.errors import ParseError
from devices.pos.protocol import cents

__all__ = ["Receipt", "ReceiptDecoder", "ReceiptItem", "parse_receipt"]

ESC, GS, LF, CR = 0x1B, 0x1D, 0x0A, 0x0D
MAX_LINE = 200
MAX_LINES = 400

# ESC/GS commands → number of parameter bytes that follow the command byte.
_ESC_ARGS = {0x21: 1, 0x45: 1, 0x2D: 1, 0x61: 1, 0x64: 1, 0x4A: 1, 0x47: 1, 0x4D: 1, 0x52: 1, 0x74: 1, 0x32: 0, 0x33: 1}
_GS_ARGS = {0x21: 1, 0x42: 1, 0x48: 1, 0x66: 1, 0x68: 1, 0x77: 1}
_CUT = 0x56

_TOTAL = re.compile(r"^\s*TOTAL\s*:?\s+(-?\d{1,7}\.\d{2})\s*$", re.IGNORECASE)
_LOYALTY = re.compile(r"^\s*LOYALTY(?:\s*(?:NO\.?|#|NUMBER))?\s*:?\s*(\d{6,20})\s*$", re.IGNORECASE)
_ITEM = re.compile(
    r"^\s*(?:(?P<qty>\d{1,4})\s*[xX]\s+)?(?P<name>\S.*?)"
    r"(?:\s+SKU:(?P<sku>[A-Za-z0-9._-]{1,40}))?\s{2,}(?P<amount>-?\d{1,7}\.\d{2})\s*$"
)
_NOT_ITEMS = re.compile(r"^\s*(SUB\s*TOTAL|TAX|VAT|CHANGE|CASH|CARD|TENDER|BALANCE)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReceiptItem:
    name: str
    sku: str | None
    quantity: int
    amount_cents: int  # the line amount as printed (quantity × unit price)


@dataclass(frozen=True, slots=True)
class Receipt:
    lines: tuple[str, ...] = field(repr=False)  # may carry a loyalty number
    items: tuple[ReceiptItem, ...] = ()
    total_cents: int | None = None
    loyalty_number: str | None = field(default=None, repr=False)


def _interpret(lines: list[str]) -> Receipt:
    items: list[ReceiptItem] = []
    total: int | None = None
    loyalty: str | None = None
    for line in lines:
        if (m := _TOTAL.match(line)) is not None:
            total = cents(m.group(1))
        elif (m := _LOYALTY.match(line)) is not None:
            loyalty = m.group(1)
        elif not _NOT_ITEMS.match(line) and (m := _ITEM.match(line)) is not None:
            qty = int(m.group("qty")) if m.group("qty") else 1
            if qty == 0:
                continue
            items.append(ReceiptItem(m.group("name").strip(), m.group("sku"), qty, cents(m.group("amount"))))
    return Receipt(tuple(lines), tuple(items), total, loyalty)


@dataclass
class ReceiptStats:
    receipts: int = 0
    unknown_commands: int = 0
    overlong_lines: int = 0


class ReceiptDecoder:
    """Incremental: ``feed`` printer bytes, get the receipts that a cut completed."""

    def __init__(self, *, strict: bool = False) -> None:
        self._pending = bytearray()
        self._line = bytearray()
        self._lines: list[str] = []
        self._strict = strict
        self.stats = ReceiptStats()

    def feed(self, chunk: bytes) -> list[Receipt]:
        data = self._pending + chunk
        self._pending = bytearray()
        done: list[Receipt] = []
        i = 0
        n = len(data)
        while i < n:
            byte = data[i]
            if byte in (ESC, GS):
                if i + 1 >= n:
                    self._pending = data[i:]
                    break
                command = data[i + 1]
                if byte == GS and command == _CUT:
                    if i + 2 >= n:
                        self._pending = data[i:]
                        break
                    mode = data[i + 2]
                    length = 4 if mode in (65, 66) else 3
                    if i + length > n:
                        self._pending = data[i:]
                        break
                    i += length
                    done.append(self._finish())
                    continue
                if byte == ESC and command == 0x40:  # ESC @: initialise → a new receipt
                    self._line.clear()
                    self._lines.clear()
                    i += 2
                    continue
                args = (_ESC_ARGS if byte == ESC else _GS_ARGS).get(command)
                if args is None:
                    if self._strict:
                        raise ParseError("unknown_command", f"command 0x{byte:02x} 0x{command:02x} at offset {i}")
                    self.stats.unknown_commands += 1
                    i += 2
                    continue
                if i + 2 + args > n:
                    self._pending = data[i:]
                    break
                if byte == ESC and command == 0x64:  # ESC d n: feed n lines
                    self._end_line()
                i += 2 + args
                continue
            if byte == LF:
                self._end_line()
            elif 0x20 <= byte <= 0x7E or byte >= 0x80:
                if len(self._line) < MAX_LINE:
                    self._line.append(byte)
                else:
                    self.stats.overlong_lines += 1
            i += 1
        return done

    @property
    def mid_command(self) -> bool:
        """True while the bytes seen so far end inside an ESC/GS command."""
        return bool(self._pending)

    def _end_line(self) -> None:
        text = self._line.decode("cp437").rstrip()
        self._line.clear()
        if text and len(self._lines) < MAX_LINES:
            self._lines.append(text)

    def _finish(self) -> Receipt:
        self._end_line()
        receipt = _interpret(self._lines)
        self._lines = []
        self.stats.receipts += 1
        return receipt


def parse_receipt(data: bytes) -> Receipt:
    """Exactly one receipt (``ESC @`` … ``GS V``) from a complete capture."""
    decoder = ReceiptDecoder(strict=True)
    receipts = decoder.feed(data)
    if decoder.mid_command:
        raise ParseError("truncated", "the capture ends inside a command")
    if len(receipts) != 1:
        raise ParseError("bad_receipt", f"expected one cut receipt, found {len(receipts)}")
    return receipts[0]
