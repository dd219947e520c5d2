"""The receipt tap: an ESC/POS printer byte stream into receipts. Pure.

The gateway listens on the printer line (RX only, see hardware/README.md) and sees what the POS
prints. :mod:`devices.pos.escpos` splits the stream into text and commands (every common
command with its parameters and data); here the commands that matter act — ``ESC @`` starts a
receipt, ``ESC t n`` / ``ESC R n`` switch the code page / national set the text is decoded in,
feeds end a line, positioning is a column break, a cut ends the receipt — and an unknown or
malformed command is counted and whatever follows it up to the line end is dropped, so its data
can never become text.

Lines are read with a :class:`ReceiptGrammar` (per POS model; the default is documented in
devices/README.md), amounts with the store's currency symbols and decimal separator:

    2 x Oat Milk 1L  SKU:OAT-1L      £3.98    quantity, name, optional SKU, line amount
    Oat Milk 1L                      1,99 €   name and amount (quantity 1)
    TOTAL                           12.34
    LOYALTY: 1234567890                       loyalty number (6–20 digits)

The printed total is checked against the sum of the lines; :attr:`Receipt.check` says
``ok``, ``total_mismatch`` or ``no_total``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from devices.errors import ParseError
from devices.pos.charsets import CODE_PAGES, EPSON_COUNTRY_CODES, text_decoder
from devices.pos.escpos import Action, CommandScanner, TokenKind

__all__ = ["Receipt", "ReceiptDecoder", "ReceiptGrammar", "ReceiptItem", "ReceiptStats", "parse_receipt"]

LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C
MAX_LINE = 200
MAX_LINES = 400
_COUNTRY_BY_CODE = {code: name for name, code in EPSON_COUNTRY_CODES.items()}
_CONTROL = re.compile(rb"([\x00-\x1f\x7f])")

DEFAULT_ITEM = (
    r"^\s*(?:(?P<qty>\d{1,4})\s*[xX]\s+)?(?P<name>\S.*?)"
    r"(?:\s+SKU:(?P<sku>[A-Za-z0-9._-]{1,40}))?\s{2,}{amount}\s*$"
)
DEFAULT_TOTAL = r"^\s*TOTAL\b\s*:?\s*{amount}\s*$"
DEFAULT_LOYALTY = r"^\s*LOYALTY\s*(?:NO\.?)?\s*(?:NUMBER)?\s*#?\s*:?\s*(?P<number>\d{6,20})\s*$"
DEFAULT_NOT_ITEMS = r"^\s*(SUB\s*TOTAL|TOTAL|TAX|VAT|CHANGE|CASH|CARD|TENDER|BALANCE)\b"


@dataclass(frozen=True)
class ReceiptGrammar:
    """How one POS model lays out its receipt. ``{amount}`` in a pattern stands for an amount.

    ``item`` needs the groups ``name`` and ``amount`` (``qty`` and ``sku`` are optional);
    ``total`` needs ``amount``; ``loyalty`` needs ``number``. Raises ValueError when not so.
    """

    item: str = DEFAULT_ITEM
    total: str = DEFAULT_TOTAL
    loyalty: str = DEFAULT_LOYALTY
    not_items: str = DEFAULT_NOT_ITEMS
    currency_symbols: tuple[str, ...] = ("£", "€", "$")
    decimal_separator: str = "."
    _compiled: dict[str, re.Pattern[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.decimal_separator not in (".", ","):
            raise ValueError("decimal separator must be '.' or ','")
        amount = self.amount_pattern()
        compiled: dict[str, re.Pattern[str]] = {}
        for name, needs in (("item", ("name", "amount")), ("total", ("amount",)), ("loyalty", ("number",)),
                            ("not_items", ())):  # fmt: skip
            try:
                pattern = re.compile(getattr(self, name).replace("{amount}", amount), re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"the receipt {name} pattern does not compile: {exc}") from None
            missing = [g for g in needs if g not in pattern.groupindex]
            if missing:
                raise ValueError(f"the receipt {name} pattern needs the group(s) {', '.join(missing)}")
            compiled[name] = pattern
        object.__setattr__(self, "_compiled", compiled)

    def amount_pattern(self) -> str:
        symbols = "|".join(re.escape(s) for s in sorted(self.currency_symbols, key=len, reverse=True) if s)
        symbol = rf"(?:(?:{symbols})\s?)?" if symbols else ""
        trailing = rf"(?:\s?(?:{symbols}))?" if symbols else ""
        thousands = "," if self.decimal_separator == "." else r"\."
        number = rf"(?:\d{{1,3}}(?:{thousands}\d{{3}})+|\d{{1,7}})"
        return rf"(?P<amount>-?{symbol}-?{number}{re.escape(self.decimal_separator)}\d{{2}}{trailing}-?)"

    def cents(self, amount: str) -> int:
        """``'-£1,234.50'`` → -123450 (with ``.`` as decimal separator)."""
        negative = "-" in amount
        digits = [c for c in amount if c.isdigit() or c == self.decimal_separator]
        whole, _, fraction = "".join(digits).partition(self.decimal_separator)
        value = int(whole or "0") * 100 + int((fraction + "00")[:2])
        return -value if negative else value

    def interpret(self, lines: list[str], unknown_commands: int = 0) -> Receipt:
        items: list[ReceiptItem] = []
        total: int | None = None
        loyalty: str | None = None
        pattern = self._compiled
        for line in lines:
            if (m := pattern["total"].match(line)) is not None:
                total = self.cents(m.group("amount"))
            elif (m := pattern["loyalty"].match(line)) is not None:
                loyalty = m.group("number")
            elif not pattern["not_items"].match(line) and (m := pattern["item"].match(line)) is not None:
                groups = m.groupdict()
                qty = int(groups["qty"]) if groups.get("qty") else 1
                if qty == 0:
                    continue
                items.append(
                    ReceiptItem(m.group("name").strip(), groups.get("sku"), qty, self.cents(m.group("amount")))
                )
        lines_total = sum(item.amount_cents for item in items)
        check = "no_total" if total is None else "ok" if total == lines_total else "total_mismatch"
        return Receipt(tuple(lines), tuple(items), total, loyalty, lines_total, check, unknown_commands)


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
    lines_total_cents: int = 0
    check: str = "no_total"  # ok | total_mismatch | no_total
    unknown_commands: int = 0  # unknown/malformed commands inside this receipt (text after them dropped)


@dataclass
class ReceiptStats:
    receipts: int = 0
    unknown_commands: int = 0
    dropped_bytes: int = 0  # text bytes dropped after an unknown command
    overlong_lines: int = 0
    checks: dict[str, int] = field(default_factory=dict)  # Receipt.check → count


class ReceiptDecoder:
    """Incremental: ``feed`` printer bytes, get the receipts that a cut completed."""

    def __init__(self, grammar: ReceiptGrammar | None = None, *, code_page: str = "cp437",
                 strict: bool = False) -> None:  # fmt: skip
        self.grammar = grammar or ReceiptGrammar()
        self._default_code_page = code_page
        self._scanner = CommandScanner()
        self._strict = strict
        self._line: list[str] = []
        self._line_length = 0
        self._lines: list[str] = []
        self._suspect = False  # an unknown command came earlier on this line
        self._unknown_in_receipt = 0
        self.stats = ReceiptStats()
        self._reset_charset()

    def _reset_charset(self) -> None:
        self._code_page: str | None = self._default_code_page
        self._country = "usa"
        self._decode = text_decoder(self._code_page, self._country)

    @property
    def mid_command(self) -> bool:
        """True while the bytes seen so far end inside an ESC/POS command or its data."""
        return self._scanner.mid_command

    def feed(self, chunk: bytes) -> list[Receipt]:
        done: list[Receipt] = []
        for token in self._scanner.feed(chunk):
            if token.kind is TokenKind.TEXT:
                self._text(token.data)
                continue
            if token.kind is not TokenKind.COMMAND:
                if self._strict:
                    raise ParseError(
                        "unknown_command", f"{token.kind.value} command 0x{token.data.hex()} in the stream"
                    )
                self.stats.unknown_commands += 1
                self._unknown_in_receipt += 1
                self._suspect = True
                continue
            assert token.command is not None
            action = token.command.action
            if action is Action.INIT:
                self._line.clear()
                self._line_length = 0
                self._lines.clear()
                self._suspect = False
                self._unknown_in_receipt = 0
                self._reset_charset()
            elif action is Action.LINE:
                self._end_line()
            elif action is Action.COLUMN:
                self._line.append("  ")
                self._line_length += 2
            elif action is Action.CODE_PAGE:
                self._code_page = CODE_PAGES.get(token.data[2])
                self._decode = text_decoder(self._code_page, self._country)
            elif action is Action.COUNTRY:
                self._country = _COUNTRY_BY_CODE.get(token.data[2], "usa")
                self._decode = text_decoder(self._code_page, self._country)
            elif action is Action.CUT and (receipt := self._finish()) is not None:
                done.append(receipt)
        return done

    def _text(self, run: bytes) -> None:
        for piece in _CONTROL.split(run):
            if not piece:
                continue
            if len(piece) == 1 and piece[0] < 0x20 or piece == b"\x7f":
                if piece[0] in (LF, FF):
                    self._end_line()
                elif piece[0] == HT:
                    self._line.append("  ")
                    self._line_length += 2
            elif self._suspect:
                self.stats.dropped_bytes += len(piece)
            elif self._line_length + len(piece) <= MAX_LINE:
                self._line.append(self._decode(piece))
                self._line_length += len(piece)
            else:
                self.stats.overlong_lines += 1

    def _end_line(self) -> None:
        text = "".join(self._line).rstrip()
        self._line.clear()
        self._line_length = 0
        self._suspect = False
        if text and len(self._lines) < MAX_LINES:
            self._lines.append(text)

    def _finish(self) -> Receipt | None:
        self._end_line()
        lines, self._lines = self._lines, []
        unknown, self._unknown_in_receipt = self._unknown_in_receipt, 0
        if not lines:  # a second cut, or a cut after a logo only: no receipt
            return None
        receipt = self.grammar.interpret(lines, unknown)
        self.stats.receipts += 1
        self.stats.checks[receipt.check] = self.stats.checks.get(receipt.check, 0) + 1
        return receipt


def parse_receipt(data: bytes, grammar: ReceiptGrammar | None = None, *, code_page: str = "cp437") -> Receipt:
    """Exactly one receipt (``ESC @`` … cut) from a complete capture.

    Raises :class:`ParseError`: ``unknown_command`` (a command not in the table, or with
    parameters that make no sense), ``truncated`` (the capture ends inside a command or its
    data) or ``bad_receipt`` (not exactly one cut receipt).
    """
    decoder = ReceiptDecoder(grammar, code_page=code_page, strict=True)
    receipts = decoder.feed(data)
    if decoder.mid_command:
        raise ParseError("truncated", "the capture ends inside a command")
    if len(receipts) != 1:
        raise ParseError("bad_receipt", f"expected one cut receipt, found {len(receipts)}")
    return receipts[0]
