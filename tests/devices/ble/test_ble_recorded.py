"""Beacon advertisements recorded in other open-source projects' test suites, with their values.

Sources (see tests/fixtures/ble/README.md; each JSON file names repository, path and commit):

* ``bluetooth_data_tools_gap.json`` — Bluetooth-Devices/bluetooth-data-tools ``tests/test_gap.py``:
  raw payloads (advert + scan response, zero padding, corrupt and truncated structures) and the
  manufacturer data, service data and local name that project's parser must return.
* ``beacontools_parser.json`` — citruz/beacontools ``tests/test_parser.py``: raw iBeacon,
  Eddystone UID/URL/TLM/encrypted TLM/EID (and Estimote, Exposure Notification) payloads with
  beacontools' expected values.
* ``home_assistant_beacons.json`` — home-assistant/core ``tests/components/ibeacon`` and
  Bluetooth-Devices/ibeacon-ble ``tests/test_init.py``: BlueCharm and Feasy beacons that send an
  iBeacon and an Eddystone-TLM in one advertisement, as bleak reports them.

Each goes through the pure parsers and through the live path: bleak's own BlueZ backend
(``BleakScannerBlueZDBus._handle_advertising_data``, fed the D-Bus ``Device1`` properties BlueZ
would deliver) builds the ``BLEDevice`` / ``AdvertisementData``, our :class:`Scanner` converts them
and :class:`BleIngest` turns them into events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from bleak.backends.bluezdbus.scanner import BleakScannerBlueZDBus
from devices_helpers import FIXTURES, RecordingBus

from devices.ble.adapter import BleIngest
from devices.ble.health import BeaconHealth
from devices.ble.presence import PresenceSettings, PresenceTracker
from devices.ble.protocol import (
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    parse_ad_structures,
    parse_advertisement,
)
from devices.ble.rotating import RotatingIdResolver, major_minor, window_index
from devices.ble.scanner import Scanner, _passive_patterns
from devices.outlet import EventOutlet

BLE = FIXTURES / "ble"
NOW = 1_790_000_000.0
APP_UUID = uuid.UUID("6f1c3a52-7e1b-4c8e-9a0d-5e2b8c4d1f70")


def _load(name: str) -> dict[str, Any]:
    return json.loads((BLE / name).read_text(encoding="utf-8"))


GAP = _load("bluetooth_data_tools_gap.json")
BEACONTOOLS = _load("beacontools_parser.json")
HOME_ASSISTANT = _load("home_assistant_beacons.json")


def _through_bleak(address: str, rssi: int, manufacturer: dict[int, bytes], service: dict[str, bytes],
                   name: str | None = None) -> list[Any]:  # fmt: skip
    """bleak's BlueZ backend handling one PropertiesChanged of a Device1, into our Scanner."""
    heard: list[Any] = []
    ours = Scanner(heard.append)
    bluez = BleakScannerBlueZDBus(ours._on_detection, None, "passive", bluez={"or_patterns": _passive_patterns()})
    props: dict[str, Any] = {"Address": address, "Alias": address.replace(":", "-"), "RSSI": rssi,
                             "ManufacturerData": manufacturer, "ServiceData": service, "UUIDs": list(service)}  # fmt: skip
    if name is not None:
        props["Name"] = props["Alias"] = name
    bluez._handle_advertising_data(f"/org/bluez/hci0/dev_{address.replace(':', '_')}", props)
    return heard


@pytest.mark.parametrize("case", GAP["cases"], ids=lambda c: c["name"])
def test_bluetooth_data_tools_payloads(case: dict[str, Any]) -> None:
    payload = b"".join(bytes.fromhex(p) for p in case["payloads_hex"])  # advert + scan response
    expected = case["expected"]
    ad = parse_ad_structures(payload)
    manufacturer = {int(k): bytes.fromhex(v) for k, v in expected["manufacturer_data"].items()}
    service = {k: bytes.fromhex(v) for k, v in expected["service_data"].items()}
    assert (ad.local_name, dict(ad.manufacturer_data), dict(ad.service_data)) == (
        expected["local_name"], manufacturer, service)  # fmt: skip
    (advertisement,) = _through_bleak("C0:FF:EE:00:00:01", -70, dict(ad.manufacturer_data), dict(ad.service_data))
    assert (dict(advertisement.manufacturer_data), dict(advertisement.service_data)) == (manufacturer, service)


def test_malformed_structures_are_named_and_the_rest_kept() -> None:
    cases = {c["name"]: c for c in GAP["cases"]}
    corrupt = parse_ad_structures(
        bytes.fromhex(cases["parse_advertisement_data_recovers_from_corrupt_data_2"]["payloads_hex"][0])
    )
    assert corrupt.manufacturer_data and corrupt.malformed and corrupt.malformed[-1].startswith("truncated")
    padded = parse_ad_structures(
        bytes.fromhex(cases["parse_advertisement_data_zero_padded_scan_included"]["payloads_hex"][0])
    )
    assert padded.malformed == ()  # zero padding between advert and scan response is not an error


def _beacontools_frame(case: dict[str, Any]) -> Any:
    e = case["expected"]
    kind = case["beacontools_class"]
    if kind == "IBeaconAdvertisement":
        return IBeacon(uuid.UUID(e["uuid"]), e["major"], e.get("minor", 0), e["tx_power"])
    if kind == "EddystoneUIDFrame":
        return EddystoneUid(e["namespace"], e["instance"], e["tx_power"])
    if kind == "EddystoneURLFrame":
        return EddystoneUrl(e["url"], e["tx_power"])
    if kind == "EddystoneEIDFrame":
        return EddystoneEid(e["eid"], e["tx_power"])
    return None


@pytest.mark.parametrize("case", BEACONTOOLS["cases"], ids=lambda c: c["name"])
def test_beacontools_payloads(case: dict[str, Any]) -> None:
    ad = parse_ad_structures(bytes.fromhex(case["payload_hex"]))
    parsed = parse_advertisement(ad.manufacturer_data, ad.service_data)
    kind, e = case["beacontools_class"], case["expected"]
    if kind == "EddystoneTLMFrame":
        (tlm,) = parsed.frames
        assert isinstance(tlm, EddystoneTlm)
        assert (tlm.battery_mv, tlm.adv_count, round(tlm.uptime_s * 10)) == (
            e["voltage"],
            e["advertising_count"],
            e["seconds_since_boot"],
        )  # beacontools keeps the raw 0.1 s count
        if "temperature" in e:
            assert tlm.temperature_c == e["temperature"]
    elif kind == "EddystoneEncryptedTLMFrame":
        assert parsed.frames == () and [err.reason for err in parsed.errors] == ["encrypted_tlm"]
    elif kind == "IBeaconAdvertisement" and "minor" not in e:  # Cypress sensor beacon: minor carries sensor data
        (frame,) = parsed.frames
        assert isinstance(frame, IBeacon)
        assert (frame.uuid, frame.major, frame.tx_power_dbm) == (uuid.UUID(e["uuid"]), e["major"], e["tx_power"])
    else:
        expected = _beacontools_frame(case)
        assert parsed.frames == ((expected,) if expected else ()) and parsed.errors == ()
    (advertisement,) = _through_bleak("C0:FF:EE:00:00:02", -65, dict(ad.manufacturer_data), dict(ad.service_data))
    live = parse_advertisement(advertisement.manufacturer_data, advertisement.service_data)
    assert (live.frames, [e.reason for e in live.errors]) == (parsed.frames, [e.reason for e in parsed.errors])


def _ingest(bus: RecordingBus, *, low_battery_mv: int,
            keys: list[tuple[str, bytes]] | None = None) -> tuple[BleIngest, EventOutlet]:  # fmt: skip
    resolver = RotatingIdResolver(lambda: keys or [], 900, lambda: 0)
    outlet = EventOutlet(bus)
    return BleIngest(
        store_id="s1", scanner_id="ble-1", zone_id="entrance", app_uuid=APP_UUID, resolver=resolver,
        presence=PresenceTracker(PresenceSettings(-70.0, -80.0, 10.0, 0.0, 1, 30.0)),
        health=BeaconHealth(low_battery_mv, 600.0), outlet=outlet, publisher=None,
        topic_root="retail/v1/s1/", clock=lambda: NOW,
    ), outlet  # fmt: skip


def _dict_case(case: dict[str, Any]) -> tuple[dict[int, bytes], dict[str, bytes]]:
    manufacturer = {int(k): bytes.fromhex(v) for k, v in case["manufacturer_data"].items()}
    return manufacturer, {k: bytes.fromhex(v) for k, v in case["service_data"].items()}


# iBeacon fields: ibeacon-ble's asserted values for the BlueCharm data; the others and every TLM
# field decoded by hand from the Apple / Eddystone-TLM layouts (the source projects assert none).
BLUECHARM = IBeacon(uuid.UUID("426c7565-4368-6172-6d42-6561636f6e73"), 3838, 4949, -59)
HA_EXPECTED: dict[str, tuple[Any, ...]] = {
    "bluecharm_ibeacon_only": (BLUECHARM,),
    "bluecharm_ibeacon_and_tlm": (BLUECHARM, EddystoneTlm(3072, 28.0, 1640, 1435.2)),
    "feasy_ibeacon_1_and_tlm": (IBeacon(uuid.UUID("fda50693-a4e2-4fb1-afcf-c6eb07647825"), 10065, 26049, -3),
                                EddystoneTlm(3206, None, 37734, 19291011.4)),
    "feasy_ibeacon_2_and_tlm": (IBeacon(uuid.UUID("d546df97-4757-47ef-be09-3e2dcbdd0c77"), 60881, 15314, -75),
                                EddystoneTlm(3206, None, 37734, 19291011.4)),
    "ibeacon_ble_bluecharm": (BLUECHARM, EddystoneTlm(3070, 28.0, 1800, 1599.6)),
    "ibeacon_ble_not_apple": (),
    "ibeacon_ble_not_type_0215": (),
}  # fmt: skip


@pytest.mark.parametrize("case", HOME_ASSISTANT["cases"], ids=lambda c: c["name"])
def test_home_assistant_beacons_pure(case: dict[str, Any]) -> None:
    manufacturer, service = _dict_case(case)
    parsed = parse_advertisement(manufacturer, service)
    assert parsed.frames == HA_EXPECTED[case["name"]] and parsed.errors == ()
    if case.get("their_values"):
        (ibeacon, *_) = parsed.frames
        values = case["their_values"]
        assert (str(ibeacon.uuid), ibeacon.major, ibeacon.minor, ibeacon.tx_power_dbm) == (
            values["uuid"], values["major"], values["minor"], values["power"])  # fmt: skip


def test_combined_ibeacon_and_tlm_give_beacon_health_through_bleak(bus: RecordingBus) -> None:
    ingest, outlet = _ingest(bus, low_battery_mv=3100)  # BlueCharm reports 3072 mV, Feasy 3206 mV
    for case in HOME_ASSISTANT["cases"]:
        manufacturer, service = _dict_case(case)
        address = case["address"] if ":" in case["address"] else "61:DE:52:1B:F0:BF"  # macOS UUIDs → a MAC
        for advertisement in _through_bleak(address, case["rssi"], manufacturer, service):
            ingest.on_advertisement(advertisement)
    asyncio.run(outlet.drain())
    statuses = [(e["properties"]["status"], e["properties"].get("batteryMv")) for e in bus.named("Device Status")]
    assert statuses == [("low_battery", 3072), ("low_battery", 3070)]  # BlueCharm (HA), then ibeacon-ble's
    assert ingest.parse_errors == {}


def test_app_ibeacon_with_tlm_gives_presence_and_health(bus: RecordingBus) -> None:
    key = bytes(range(32))
    ingest, outlet = _ingest(bus, low_battery_mv=3100, keys=[("tok-1", key)])
    major, minor = major_minor(key, window_index(NOW, 900))
    ibeacon = b"\x02\x15" + APP_UUID.bytes + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + b"\xc5"
    bluecharm = next(c for c in HOME_ASSISTANT["cases"] if c["name"] == "bluecharm_ibeacon_and_tlm")
    _, service = _dict_case(bluecharm)
    for advertisement in _through_bleak("AA:BB:CC:00:00:07", -55, {0x004C: ibeacon}, service):
        ingest.on_advertisement(advertisement)
    asyncio.run(outlet.drain())
    assert [e["event"] for e in bus.events] == ["Zone Entered", "Device Status"]
    assert bus.events[0]["userId"] == "tok-1" and bus.events[1]["properties"]["batteryMv"] == 3072
