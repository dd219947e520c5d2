"""Receipts printed with python-escpos (PyPI) into the receipt tap through a real pty.

python-escpos is a third-party ESC/POS driver; its ``Dummy`` printer collects the exact bytes it
would send to a printer. Each variant below prints the same shop's receipt with different
commands around the text — drawer kicks, barcodes in both ``GS k`` forms, a native QR code,
raster/column/graphics images, code-page switches, ``set()`` styles, spacing and margins, cut
variants, currency symbols and a decimal comma — and the tap must read exactly the same items,
quantities, total and loyalty number from every one. Commands python-escpos has no method for
(``ESC SP``, ``GS L``, ``FS p``) are sent through its ``_raw`` with its own constants.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from devices_helpers import Pty, RecordingBus, fuzz_cases, fuzz_seed, pos_terminal, until
from escpos.constants import ESC, FS, GS, RT_STATUS_ONLINE
from escpos.printer import Dummy
from PIL import Image

from devices.errors import ParseError
from devices.pos.link import reconnecting
from devices.pos.receipt import ReceiptDecoder, ReceiptGrammar, parse_receipt

LOYALTY = "6012345678901234"
ITEMS = [("Oat Milk 1L", 2, 398, "OAT-1L"), ("Bananas 6pk", 1, 149, None), ("Dark Chocolate 70%", 1, 100, None)]
TOTAL_CENTS = 647
# a patterned logo whose image bytes include LF and printable ASCII, as a real logo's do
LOGO = Image.frombytes("1", (96, 24), random.Random(14).randbytes(96 * 24 // 8))


def _money(cents: int, style: str) -> str:
    whole, frac = divmod(cents, 100)
    return {
        "plain": f"{whole}.{frac:02d}",
        "pound": f"£{whole}.{frac:02d}",
        "euro_after": f"{whole}.{frac:02d} €",
        "dollar_space": f"$ {whole}.{frac:02d}",
        "comma": f"{whole},{frac:02d} €",
        "hash": f"#{whole}.{frac:02d}",  # '#' prints as '£' under the UK national set (ESC R 3)
    }[style]


def _item_line(name: str, qty: int, cents: int, sku: str | None, style: str) -> str:
    head = f"{qty} x {name}" if qty > 1 else name
    if sku:
        head += f" SKU:{sku}"
    return f"{head:<28}{_money(cents, style):>10}"


def _receipt(*, style: str = "plain",
             hooks: dict[str, Callable[[Dummy], None]] | None = None) -> bytes:  # fmt: skip
    """The shop's receipt; ``hooks`` add commands at 'start', 'before_items', 'before_total', 'end'."""
    hooks = hooks or {}
    p = Dummy()
    p.hw("INIT")
    hooks.get("start", lambda p: None)(p)
    p.set(align="center", bold=True, double_height=True, double_width=True)
    p.textln("CORNER MARKET")
    p.set_with_default()
    p.textln("12 High Street")
    hooks.get("before_items", lambda p: None)(p)
    for name, qty, cents, sku in ITEMS:
        p.textln(_item_line(name, qty, cents, sku, style))
    p.textln(f"{'SUBTOTAL':<28}{_money(TOTAL_CENTS, style):>10}")
    hooks.get("before_total", lambda p: None)(p)
    p.set(bold=True)
    p.textln(f"{'TOTAL':<28}{_money(TOTAL_CENTS, style):>10}")
    p.set_with_default()
    p.textln(f"{'CARD':<28}{_money(TOTAL_CENTS, style):>10}")
    p.textln(f"LOYALTY NO: {LOYALTY}")
    hooks.get("end", lambda p: None)(p)
    p.textln("Thank you!")
    p.cut()
    return bytes(p.output)


def _barcode128(p: Dummy) -> None:
    p.barcode("{B" + LOYALTY, "CODE128", function_type="B", pos="OFF")


def _qr(p: Dummy) -> None:
    p.qr("https://example.com/r/T1-000123?loyalty=1", native=True, size=4)


VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "drawer_kick_before_total": {"hooks": {"before_total": lambda p: p.cashdraw(2)}},
    "drawer_kick_at_start": {"hooks": {"start": lambda p: p.cashdraw(5)}},
    "drawer_kick_before_first_item": {"hooks": {"before_items": lambda p: p.cashdraw(2)}},
    "barcode_code128_before_total": {"hooks": {"before_total": _barcode128}},
    "barcode_upca_nul_form": {"hooks": {"before_total": lambda p: p.barcode("01234567890", "UPC-A", pos="OFF")}},
    "native_qr_before_total": {"hooks": {"before_total": _qr}},
    "raster_logo_before_items": {"hooks": {"before_items": lambda p: p.image(LOGO, impl="bitImageRaster")}},
    "column_image_before_items": {"hooks": {"before_items": lambda p: p.image(LOGO, impl="bitImageColumn")}},
    "graphics_logo_at_start": {"hooks": {"start": lambda p: p.image(LOGO, impl="graphics")}},
    "nv_logo_and_margins": {
        "hooks": {"start": lambda p: p._raw(FS + b"p\x01\x00" + GS + b"L\x10\x00" + GS + b"W\x00\x02")}
    },
    "character_spacing": {
        "hooks": {"before_items": lambda p: p._raw(ESC + b" 1"), "before_total": lambda p: p._raw(ESC + b" \x00")}
    },  # fmt: skip
    "code_page_cp858_euro": {"style": "euro_after", "hooks": {"start": lambda p: p.charcode("CP858")}},
    "magic_encoding_pound": {"style": "pound"},
    "magic_encoding_euro_mid_line": {"style": "euro_after"},
    "uk_national_set_pound": {"style": "hash", "hooks": {"start": lambda p: p._raw(ESC + b"R\x03")}},
    "dollar_with_space": {"style": "dollar_space"},
    "decimal_comma": {"style": "comma", "grammar": ReceiptGrammar(decimal_separator=",")},
    "styles_and_spacing": {
        "hooks": {
            "before_items": lambda p: (
                p.set(font="b", underline=1, invert=True, smooth=True, flip=False),
                p.line_spacing(40),
                p.set(custom_size=True, width=2, height=2),
            ),
            "before_total": lambda p: (p.set_with_default(), p.line_spacing(), p.print_and_feed(1)),
        }
    },  # fmt: skip
    "buzzer_panel_status": {
        "hooks": {"start": lambda p: (p.buzzer(2, 3), p.panel_buttons(False), p._raw(RT_STATUS_ONLINE))}
    },  # fmt: skip
    "tabs_between_columns": {"hooks": {"end": lambda p: (p.control("HT"), p.textln("served by 4"))}},
    "partial_cut_without_feed": {"after": lambda p: p.cut(mode="PART", feed=False)},
}


def _variant_bytes(name: str) -> tuple[bytes, ReceiptGrammar | None]:
    spec = VARIANTS[name]
    data = _receipt(style=spec.get("style", "plain"), hooks=spec.get("hooks"))
    if "after" in spec:
        p = Dummy()
        spec["after"](p)
        data += bytes(p.output)
    return data, spec.get("grammar")


EXPECTED_PRODUCTS = [
    {"name": "Oat Milk 1L", "quantity": 2, "price": 1.99, "sku": "OAT-1L"},
    {"name": "Bananas 6pk", "quantity": 1, "price": 1.49},
    {"name": "Dark Chocolate 70%", "quantity": 1, "price": 1.00},
]


def _tap(tmp_path: Path, bus: RecordingBus, streams: list[bytes], expected_events: int, **options: Any) -> Any:
    async def main() -> Any:
        pty = Pty(tmp_path / "edge-pos1")
        terminal, outlet = pos_terminal(bus, **options)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outlet.run()),
                tg.create_task(reconnecting(str(pty.link), terminal.read_receipts, baudrate=9600, what="receipt")),
            ]
            for data in streams:
                for i in range(0, len(data), 64):  # in chunks, as a 9600 baud line delivers them
                    pty.write(data[i : i + 64])
                    await asyncio.sleep(0)
            await until(lambda: len(bus.events) >= expected_events)
            for task in tasks:
                task.cancel()
        pty.unplug()
        return terminal

    return asyncio.run(main())


def test_python_escpos_variants_through_a_pty_book_exactly_the_receipt(tmp_path: Path, bus: RecordingBus) -> None:
    plain = [name for name in VARIANTS if "grammar" not in VARIANTS[name]]
    terminal = _tap(tmp_path, bus, [_variant_bytes(name)[0] for name in plain], len(plain))
    assert len(bus.events) == len(plain)
    for name, order in zip(plain, bus.events, strict=True):
        properties = order["properties"]
        assert order["event"] == "Order Completed", name
        assert properties["products"] == EXPECTED_PRODUCTS, name
        assert (properties["total"], properties["receiptCheck"]) == (6.47, "ok"), name
        assert properties["identifiers"] == {"loyaltyId": LOYALTY}, name
        assert "unknownCommands" not in properties, name
    assert terminal.receipt_decoder.stats.unknown_commands == 0


def test_decimal_comma_grammar_through_a_pty(tmp_path: Path, bus: RecordingBus) -> None:
    data, grammar = _variant_bytes("decimal_comma")
    _tap(tmp_path, bus, [data], 1, receipt_grammar=grammar)
    (order,) = bus.events
    assert order["properties"]["products"] == EXPECTED_PRODUCTS
    assert order["properties"]["total"] == 6.47 and order["properties"]["receiptCheck"] == "ok"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_parses_strictly(name: str) -> None:
    data, grammar = _variant_bytes(name)
    receipt = parse_receipt(data, grammar)
    assert [(i.name, i.quantity, i.amount_cents, i.sku) for i in receipt.items] == ITEMS
    assert (receipt.total_cents, receipt.loyalty_number, receipt.check) == (TOTAL_CENTS, LOYALTY, "ok")


def test_a_total_that_does_not_match_the_lines_is_flagged_not_booked_silently(
    tmp_path: Path, bus: RecordingBus
) -> None:
    p = Dummy()
    p.hw("INIT")
    p.textln(_item_line("Oat Milk 1L", 2, 398, "OAT-1L", "plain"))
    p.textln(f"{'TOTAL':<28}{'9.99':>10}")
    p.cut()
    terminal = _tap(tmp_path, bus, [bytes(p.output)], 1)
    (order,) = bus.events
    assert order["properties"]["receiptCheck"] == "total_mismatch"
    assert order["properties"]["total"] == 9.99 and order["properties"]["linesTotal"] == 3.98
    assert terminal.receipt_decoder.stats.checks == {"total_mismatch": 1}


def test_an_unknown_command_is_counted_and_its_line_never_becomes_text() -> None:
    # ESC 0x01 is not an ESC/POS command: what follows it on the line is suspect and dropped
    data, _ = _variant_bytes("plain")
    poisoned = data.replace(b"Bananas 6pk", b"Bananas 6pk\x1b\x01\x05\x07  9.99", 1)
    decoder = ReceiptDecoder()
    (receipt,) = decoder.feed(poisoned)
    assert decoder.stats.unknown_commands == 1 and receipt.unknown_commands == 1
    assert [i.name for i in receipt.items] == ["Oat Milk 1L", "Dark Chocolate 70%"]
    assert receipt.check == "total_mismatch"  # the lost line shows in the cross-check
    with pytest.raises(ParseError) as caught:
        parse_receipt(poisoned)
    assert caught.value.reason == "unknown_command"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif op == 1:
            del out[at : at + rng.randint(1, 24)]
        elif op == 2:
            out[at:at] = rng.choice([b"\x1b", b"\x1d", b"\x1c", b"\x10", b"\x1d(k", b"\x1dv0", b"\x1b*", b"\x1dk"])
        else:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
    return bytes(out)


def test_fuzz_over_python_escpos_command_streams() -> None:
    """The only failure of ``parse_receipt`` is ParseError; the streaming decoder never raises."""
    corpus = [_variant_bytes(name)[0] for name in VARIANTS]
    rng = random.Random(fuzz_seed())
    for _ in range(fuzz_cases(600, ci=2_500)):  # each case parses a whole receipt twice
        data = _mutate(rng, rng.choice(corpus))
        try:
            parse_receipt(data)
        except ParseError as exc:
            assert exc.reason in ("unknown_command", "truncated", "bad_receipt")
        decoder = ReceiptDecoder()
        cut = rng.randrange(len(data) + 1)
        decoder.feed(data[:cut])
        decoder.feed(data[cut:])
