from __future__ import annotations

import random

import pytest
from devices_helpers import FIXTURES, fuzz_cases, fuzz_seed, load_hex
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import ParseError
from devices.pos.display import render_offer, to_display_ascii, wrap
from devices.pos.protocol import (
    FrameDecoder,
    ItemAdded,
    ItemRemoved,
    LoyaltyCard,
    OrderCompleted,
    encode_frame,
    parse_record,
)
from devices.pos.receipt import Receipt, ReceiptDecoder, ReceiptItem, parse_receipt

SESSION = [
    ItemAdded("OAT-1L", 2, 199),
    ItemAdded("BAN-6", 1, 149),
    LoyaltyCard("6012345678901234"),
    ItemRemoved("BAN-6", 1, 149),
    ItemAdded("CHOC-70", 1, 349),
    OrderCompleted("T1-000123", 747),
]
RECEIPT = Receipt(
    lines=(
        "CORNER MARKET",
        "12 High Street",
        "2 x Oat Milk 1L SKU:OAT-1L      3.98",
        "Bananas 6pk                 1.49",
        "Crème Fraîche SKU:CRF-200  2.29",
        "SUBTOTAL                    7.76",
        "TOTAL                       7.76",
        "CARD                        7.76",
        "LOYALTY NO: 6012345678901234",
        "Thank you!",
    ),
    items=(
        ReceiptItem("Oat Milk 1L", "OAT-1L", 2, 398),
        ReceiptItem("Bananas 6pk", None, 1, 149),
        ReceiptItem("Crème Fraîche", "CRF-200", 1, 229),
    ),
    total_cents=776,
    loyalty_number="6012345678901234",
    lines_total_cents=776,
    check="ok",
)


def test_basket_session_capture() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(load_hex(FIXTURES / "pos" / "basket_session.hex")) == SESSION
    assert decoder.stats.frames == 6 and decoder.stats.garbage_bytes == 4


def test_basket_session_byte_by_byte() -> None:
    decoder = FrameDecoder()
    records = []
    for byte in load_hex(FIXTURES / "pos" / "basket_session.hex"):
        records += decoder.feed(bytes([byte]))
    assert records == SESSION


def test_broken_frames_are_skipped_and_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(load_hex(FIXTURES / "pos" / "basket_broken.hex")) == [ItemAdded("TEA-20", 3, 250)]
    assert decoder.stats.bad_frames == {"bad_checksum": 1, "unknown_record": 1, "truncated": 1}


def test_records_round_trip() -> None:
    for record in SESSION:
        assert FrameDecoder().feed(encode_frame(record)) == [record]


def test_loyalty_number_stays_out_of_repr() -> None:
    assert "6012345678901234" not in repr(LoyaltyCard("6012345678901234"))
    assert "6012345678901234" not in repr(RECEIPT)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"A|OAT|0|1.00", "bad_quantity"),
        (b"A|OAT|1|1", "bad_amount"),
        (b"A|O T|1|1.00", "bad_sku"),
        (b"L|12ab", "bad_loyalty"),
        (b"C|T1", "bad_fields"),
        (b"A|OAT|1|1.00\x7f", "bad_byte"),
        (b"", "bad_length"),
    ],
)
def test_bad_records(payload: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_record(payload)
    assert caught.value.reason == reason


def test_receipt_capture() -> None:
    assert parse_receipt(load_hex(FIXTURES / "pos" / "receipt_corner_market.hex")) == RECEIPT


def test_receipt_stream_in_chunks_with_two_receipts() -> None:
    data = load_hex(FIXTURES / "pos" / "receipt_corner_market.hex")
    decoder = ReceiptDecoder()
    receipts = []
    stream = data * 2
    for i in range(0, len(stream), 7):
        receipts += decoder.feed(stream[i : i + 7])
    assert receipts == [RECEIPT, RECEIPT]


def test_receipt_truncated_inside_a_command() -> None:
    with pytest.raises(ParseError, match="truncated"):
        parse_receipt(b"\x1b@hello\n\x1d")


def test_pole_display_bytes() -> None:
    expected = load_hex(FIXTURES / "pos" / "pole_display_offer.hex")
    assert render_offer("Crème brûlée 2 for €5 – today only!") == expected


def test_display_text_is_ascii_and_fits() -> None:
    assert to_display_ascii("Ünïcödé ✓ 東京") == "Unicode ? ??"
    assert wrap("a " * 30) == ["a a a a a a a a a a", "a a a a a a a a a.."]
    assert all(len(row) <= 20 for row in wrap("Supercalifragilisticexpialidocious deal on everything"))


def _mutations(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            i = rng.randrange(len(data))
            del data[i : i + rng.randint(1, 10)]
        elif op == 2:
            data[rng.randrange(len(data) + 1) : 0] = rng.choice([b"\x02", b"\x03", b"\x1b", b"\x1dV", b"|"])
        else:
            data[rng.randrange(len(data) + 1) : 0] = rng.randbytes(rng.randint(1, 12))
    return bytes(data)


def test_fuzz_basket_decoder_and_record_parser() -> None:
    seed_bytes = load_hex(FIXTURES / "pos" / "basket_session.hex") + load_hex(FIXTURES / "pos" / "basket_broken.hex")
    rng = random.Random(fuzz_seed())
    for _ in range(fuzz_cases()):
        data = _mutations(rng, seed_bytes)
        decoder = FrameDecoder()
        cut = rng.randrange(len(data) + 1)
        decoder.feed(data[:cut])
        decoder.feed(data[cut:])  # the decoder itself never raises
        try:
            parse_record(data[rng.randrange(len(data) + 1) :][:60])
        except ParseError:
            pass


def test_fuzz_receipt_parser() -> None:
    seed_bytes = load_hex(FIXTURES / "pos" / "receipt_corner_market.hex")
    rng = random.Random(fuzz_seed())
    for _ in range(fuzz_cases()):
        data = _mutations(rng, seed_bytes)
        try:
            parse_receipt(data)
        except ParseError:
            pass
        ReceiptDecoder().feed(data)


@settings(max_examples=fuzz_cases(300), deadline=None)
@given(st.text(max_size=120))
def test_pole_display_output_is_always_two_ascii_rows(title: str) -> None:
    data = render_offer(title)
    assert data[0] == 0x0C and all(0x20 <= b <= 0x7E for b in data[5:25])
    rows = data[1:].split(b"\x1f$")[1:]
    assert 1 <= len(rows) <= 2 and all(len(row) == 2 + 20 for row in rows)
