from __future__ import annotations

import random
import uuid

import pytest
from devices_helpers import FIXTURES, fuzz_cases, fuzz_seed, load_hex

from devices.ble.protocol import (
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    parse_ad_structures,
    parse_advertisement,
    parse_eddystone,
    parse_ibeacon,
)
from devices.errors import ParseError

EXPECTED = {
    "ibeacon_airlocate": IBeacon(uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0"), 1, 2, -59),
    "ibeacon_app_rotating": IBeacon(uuid.UUID("6f1c3a52-7e1b-4c8e-9a0d-5e2b8c4d1f70"), 0xA1B2, 0xC3D4, -61),
    "eddystone_uid": EddystoneUid("edd1ebeac04e5defa017", "0bdb87c58ce6", -25),
    "eddystone_url": EddystoneUrl("https://www.example.com", -20),
    "eddystone_tlm": EddystoneTlm(battery_mv=3000, temperature_c=23.5, adv_count=4660, uptime_s=1234.5),
    "eddystone_tlm_low_battery": EddystoneTlm(
        battery_mv=2100, temperature_c=None, adv_count=16_777_216, uptime_s=86_400.0
    ),
    "eddystone_eid": EddystoneEid("a1b2c3d4e5f60718", -12),
    "apple_continuity": None,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_advertisement(name: str) -> None:
    ad = parse_ad_structures(load_hex(FIXTURES / "ble" / f"{name}.hex"))
    parsed = parse_advertisement(ad.manufacturer_data, ad.service_data)
    assert parsed.frames == ((EXPECTED[name],) if EXPECTED[name] else ()) and not parsed.errors


def test_every_capture_has_an_expectation() -> None:
    names = {p.stem for p in (FIXTURES / "ble").glob("*.hex")}
    assert names == set(EXPECTED) | {"eddystone_tlm_encrypted"}


def test_encrypted_tlm_is_the_documented_error() -> None:
    ad = parse_ad_structures(load_hex(FIXTURES / "ble" / "eddystone_tlm_encrypted.hex"))
    parsed = parse_advertisement(ad.manufacturer_data, ad.service_data)
    assert parsed.frames == () and [e.reason for e in parsed.errors] == ["encrypted_tlm"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x40\x00", "unknown_frame"),
        (b"\x00\xe7" + b"\x00" * 10, "bad_length"),
        (b"\x10\xec\x09", "bad_url"),
        (b"\x10\xec\x00\x0f", "bad_url"),
        (b"\x20\x00\x0b\xb8", "bad_length"),
        (b"\x20\x07" + b"\x00" * 12, "bad_version"),
        (b"\x30\xf4\x00", "bad_length"),
    ],
)
def test_bad_eddystone(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_eddystone(data)
    assert caught.value.reason == reason


def test_bad_ibeacon() -> None:
    with pytest.raises(ParseError, match="not_ibeacon"):
        parse_ibeacon(b"\x10\x05")
    with pytest.raises(ParseError, match="bad_length"):
        parse_ibeacon(b"\x02\x15" + b"\x00" * 20)


def test_truncated_ad_structure_keeps_what_came_before() -> None:
    ad = parse_ad_structures(bytes.fromhex("02010604FF5900011AFF4C000215"))
    assert ad.manufacturer_data == {0x0059: b"\x01"} and ad.malformed == ("truncated at offset 8",)


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            del data[rng.randrange(len(data)) :]
        elif op == 2:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        else:
            data = bytearray(rng.randbytes(rng.randrange(40)))
    return bytes(data)


def test_fuzz_only_parse_error() -> None:
    seeds = [load_hex(p) for p in sorted((FIXTURES / "ble").glob("*.hex"))]
    rng = random.Random(fuzz_seed())
    for _ in range(fuzz_cases()):
        data = _mutate(rng, seeds)
        ad = parse_ad_structures(data)  # never raises
        parsed = parse_advertisement(ad.manufacturer_data, ad.service_data)  # never raises
        assert all(isinstance(e, ParseError) for e in parsed.errors)
        for parser in (parse_ibeacon, parse_eddystone):
            try:
                parser(data[rng.randrange(len(data) + 1) :])
            except ParseError:
                pass
