"""Pure parsers for the BLE advertisements the gateway understands.

Bytes in, frozen dataclasses out; the only error is :class:`devices.errors.ParseError`.

* :func:`parse_ad_structures` — a raw advertising payload (length/type/data structures, Core
  Spec Vol 3 Part C §11; advert and scan response concatenated, zero padding) into its
  manufacturer data, 16/32/128-bit service data and local name, skipping malformed structures.
* :func:`parse_ibeacon` — Apple iBeacon manufacturer data (company 0x004C, type 0x02 0x15).
* :func:`parse_eddystone` — Google Eddystone service data (UUID 0xFEAA): UID, URL, TLM, EID.
* :func:`parse_advertisement` — what a scanner reports (the shapes bleak uses) into every
  beacon frame it carries, with the errors of the parts that were malformed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from devices.errors import ParseError

__all__ = [
    "APPLE_COMPANY_ID",
    "EDDYSTONE_SERVICE_UUID",
    "AdStructures",
    "BeaconFrame",
    "BeaconFrames",
    "EddystoneEid",
    "EddystoneTlm",
    "EddystoneUid",
    "EddystoneUrl",
    "IBeacon",
    "parse_ad_structures",
    "parse_advertisement",
    "parse_eddystone",
    "parse_ibeacon",
]

APPLE_COMPANY_ID = 0x004C
EDDYSTONE_UUID16 = 0xFEAA
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"

_AD_SERVICE_DATA_16 = 0x16
_AD_SERVICE_DATA_32 = 0x20
_AD_SERVICE_DATA_128 = 0x21
_AD_MANUFACTURER = 0xFF
_AD_NAMES = (0x08, 0x09)  # shortened / complete local name

_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_EXPANSIONS = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AdStructures:
    """The parts of an advertising payload the beacon parsers use."""

    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]  # keyed by 128-bit UUID string, as bleak does
    local_name: str | None
    malformed: tuple[str, ...] = ()  # structures skipped, with their offset


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: uuid.UUID
    major: int
    minor: int
    tx_power_dbm: int  # "measured power": RSSI at 1 m


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    namespace: str  # 10 bytes, hex
    instance: str  # 6 bytes, hex
    tx_power_dbm: int  # calibrated at 0 m


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    url: str
    tx_power_dbm: int


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    battery_mv: int | None  # None: not battery powered (the frame carries 0)
    temperature_c: float | None  # None: no sensor (0x8000)
    adv_count: int  # advertisements sent since power-on or reboot
    uptime_s: float  # since power-on or reboot, 0.1 s resolution


@dataclass(frozen=True, slots=True)
class EddystoneEid:
    eid: str  # 8-byte ephemeral id, hex
    tx_power_dbm: int


BeaconFrame = IBeacon | EddystoneUid | EddystoneUrl | EddystoneTlm | EddystoneEid


def _int8(value: int) -> int:
    return value - 256 if value > 127 else value


def _uuid_string(raw: bytes) -> str:
    """A little-endian 16-, 32- or 128-bit UUID from an AD structure as bleak spells it."""
    if len(raw) == 16:
        return str(uuid.UUID(bytes=bytes(reversed(raw))))
    return f"{int.from_bytes(raw, 'little'):08x}{_BASE_UUID_SUFFIX}"


_SERVICE_DATA_UUID_BYTES = {_AD_SERVICE_DATA_16: 2, _AD_SERVICE_DATA_32: 4, _AD_SERVICE_DATA_128: 16}


def parse_ad_structures(payload: bytes) -> AdStructures:
    """Split a legacy advertising payload — or an advert and its scan response concatenated, each
    possibly zero-padded to 31 bytes — into its manufacturer data, service data and name.

    Never raises: a structure that is malformed (its data too short for its type, type 0) is
    skipped and named in ``malformed``, and the ones after it are still read; a length that runs
    past the end stops the walk there (nothing after it can be framed). A zero length byte is
    padding and skipped. The rules and the recorded cases are those of bluetooth-data-tools.
    """
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    name: str | None = None
    malformed: list[str] = []
    offset = 0
    while offset < len(payload):
        length = payload[offset]
        if length == 0:  # padding: an advert zero-filled to 31 bytes, maybe a scan response after it
            offset += 1
            continue
        end = offset + 1 + length
        if end > len(payload):
            malformed.append(f"truncated at offset {offset}")
            break
        ad_type, data = payload[offset + 1], bytes(payload[offset + 2 : end])
        if ad_type == _AD_MANUFACTURER:
            if len(data) < 2:
                malformed.append(f"manufacturer data at offset {offset} has no company id")
            else:
                manufacturer[int.from_bytes(data[:2], "little")] = data[2:]
        elif ad_type in _SERVICE_DATA_UUID_BYTES:
            size = _SERVICE_DATA_UUID_BYTES[ad_type]
            if len(data) < size:
                malformed.append(f"service data at offset {offset} has no complete UUID")
            else:
                service[_uuid_string(data[:size])] = data[size:]
        elif ad_type in _AD_NAMES:
            name = data.decode("utf-8", errors="replace") or name
        elif ad_type == 0:
            malformed.append(f"AD type 0 at offset {offset}")
        offset = end
    return AdStructures(manufacturer, service, name, tuple(malformed))


def parse_ibeacon(data: bytes) -> IBeacon:
    """Apple manufacturer data *after* the company id: 0x02 0x15, UUID, major, minor, power."""
    if len(data) < 2 or data[0] != 0x02 or data[1] != 0x15:
        raise ParseError("not_ibeacon", "manufacturer data does not start with 0x02 0x15")
    if len(data) != 23:
        raise ParseError("bad_length", f"iBeacon data is {len(data)} bytes, expected 23")
    return IBeacon(
        uuid=uuid.UUID(bytes=bytes(data[2:18])),
        major=int.from_bytes(data[18:20], "big"),
        minor=int.from_bytes(data[20:22], "big"),
        tx_power_dbm=_int8(data[22]),
    )


def parse_eddystone(data: bytes) -> EddystoneUid | EddystoneUrl | EddystoneTlm | EddystoneEid:
    """Eddystone service data (after the 0xFEAA UUID); the first byte is the frame type."""
    if not data:
        raise ParseError("truncated", "Eddystone service data is empty")
    frame = data[0]
    if frame == 0x00:
        if len(data) not in (18, 20):  # the two trailing RFU bytes are often left out
            raise ParseError("bad_length", f"Eddystone-UID is {len(data)} bytes, expected 18 or 20")
        return EddystoneUid(data[2:12].hex(), data[12:18].hex(), _int8(data[1]))
    if frame == 0x10:
        return _parse_url(data)
    if frame == 0x20:
        return _parse_tlm(data)
    if frame == 0x30:
        if len(data) != 10:
            raise ParseError("bad_length", f"Eddystone-EID is {len(data)} bytes, expected 10")
        return EddystoneEid(data[2:10].hex(), _int8(data[1]))
    raise ParseError("unknown_frame", f"Eddystone frame type 0x{frame:02x} is not known")


def _parse_url(data: bytes) -> EddystoneUrl:
    if len(data) < 3 or len(data) > 20:
        raise ParseError("bad_length", f"Eddystone-URL is {len(data)} bytes, expected 3–20")
    if data[2] >= len(_URL_SCHEMES):
        raise ParseError("bad_url", f"URL scheme prefix 0x{data[2]:02x} is not defined")
    parts = [_URL_SCHEMES[data[2]]]
    for index, byte in enumerate(data[3:], start=3):
        if byte < len(_URL_EXPANSIONS):
            parts.append(_URL_EXPANSIONS[byte])
        elif 0x21 <= byte <= 0x7E:
            parts.append(chr(byte))
        else:
            raise ParseError("bad_url", f"URL byte 0x{byte:02x} at offset {index} is reserved")
    return EddystoneUrl("".join(parts), _int8(data[1]))


def _parse_tlm(data: bytes) -> EddystoneTlm:
    if len(data) < 2:
        raise ParseError("truncated", "Eddystone-TLM has no version byte")
    if data[1] == 0x01:
        raise ParseError("encrypted_tlm", "encrypted Eddystone-TLM (version 1) is not supported")
    if data[1] != 0x00:
        raise ParseError("bad_version", f"Eddystone-TLM version {data[1]} is not known")
    if len(data) != 14:
        raise ParseError("bad_length", f"Eddystone-TLM is {len(data)} bytes, expected 14")
    battery = int.from_bytes(data[2:4], "big")
    raw_temp = int.from_bytes(data[4:6], "big", signed=True)
    return EddystoneTlm(
        battery_mv=battery or None,
        temperature_c=None if raw_temp == -0x8000 else raw_temp / 256.0,
        adv_count=int.from_bytes(data[6:10], "big"),
        uptime_s=int.from_bytes(data[10:14], "big") / 10.0,
    )


@dataclass(frozen=True, slots=True)
class BeaconFrames:
    """Every beacon frame one advertisement carries (an iBeacon and an Eddystone-TLM together,
    as BlueCharm and Feasy beacons send them), and the errors of the parts that were wrong."""

    frames: tuple[BeaconFrame, ...] = ()
    errors: tuple[ParseError, ...] = ()


def parse_advertisement(manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]) -> BeaconFrames:
    """The beacon frames in one advertisement (what a scanner reports, the shapes bleak uses).

    Never raises: a part that claims to be a beacon (Apple 0x02 0x15 prefix, Eddystone service
    data) but has wrong bytes is reported in ``errors`` as :class:`ParseError`, and the other
    parts are still read.
    """
    frames: list[BeaconFrame] = []
    errors: list[ParseError] = []
    apple = manufacturer_data.get(APPLE_COMPANY_ID)
    if apple is not None and apple[:2] == b"\x02\x15":
        try:
            frames.append(parse_ibeacon(apple))
        except ParseError as exc:
            errors.append(exc)
    eddystone = service_data.get(EDDYSTONE_SERVICE_UUID)
    if eddystone is not None:
        try:
            frames.append(parse_eddystone(eddystone))
        except ParseError as exc:
            errors.append(exc)
    return BeaconFrames(tuple(frames), tuple(errors))
