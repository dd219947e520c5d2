"""BLE: beacon parsers, the bleak scanner, app presence by rotating ids, beacon health."""

from devices.ble.adapter import BleIngest
from devices.ble.health import BeaconHealth, HealthChange
from devices.ble.presence import PresenceSettings, PresenceTracker, ZoneChange
from devices.ble.protocol import (
    AdStructures,
    BeaconFrames,
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
from devices.ble.rotating import AppKeyStore, RotatingIdResolver, major_minor, rotating_id
from devices.ble.scanner import Advertisement, Scanner, run_scanner

__all__ = [
    "AdStructures",
    "Advertisement",
    "AppKeyStore",
    "BeaconFrames",
    "BeaconHealth",
    "BleIngest",
    "EddystoneEid",
    "EddystoneTlm",
    "EddystoneUid",
    "EddystoneUrl",
    "HealthChange",
    "IBeacon",
    "PresenceSettings",
    "PresenceTracker",
    "RotatingIdResolver",
    "Scanner",
    "ZoneChange",
    "major_minor",
    "parse_ad_structures",
    "parse_advertisement",
    "parse_eddystone",
    "parse_ibeacon",
    "rotating_id",
    "run_scanner",
]
