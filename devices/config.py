"""Configuration sections of the device layer: ``[ble]``, ``[presence]``, ``[pos]``, ``[camera]``.

Every adapter defaults to ``"off"`` so a plain gateway starts on a machine with no radio, serial
port or camera; ``"simulated"`` runs the adapter on the simulator's inputs (``edge simulate``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from devices.pos.charsets import COUNTRIES, code_page_number, is_single_byte_codec
from devices.pos.receipt import DEFAULT_ITEM, DEFAULT_LOYALTY, DEFAULT_TOTAL, ReceiptGrammar
from edge.config import doc

__all__ = ["CONFIG_SECTIONS", "BleConfig", "CameraConfig", "PosConfig", "PresenceConfig"]

#: The iBeacon proximity UUID the store app advertises its rotating id under (demo default).
DEFAULT_APP_UUID = "6f1c3a52-7e1b-4c8e-9a0d-5e2b8c4d1f70"
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _uuid(value: str) -> str | None:
    try:
        uuid.UUID(value)
    except ValueError:
        return "must be a UUID like 6f1c3a52-7e1b-4c8e-9a0d-5e2b8c4d1f70"
    return None


def _device_id(value: str) -> str | None:
    return None if _DEVICE_ID.match(value) else "must be 1–63 of a-z, 0-9, '-', '_', starting alphanumeric"


def _zone_id(value: str) -> str | None:
    return None if _DEVICE_ID.match(value) else "must be 1–63 of a-z, 0-9, '-', '_' (it is part of an MQTT topic)"


@dataclass(frozen=True)
class BleConfig:
    source: Literal["off", "bleak", "simulated"] = doc(
        "off", "BLE input: 'off', 'bleak' (the local Bluetooth adapter) or 'simulated' (edge simulate)"
    )
    adapter: str = doc("hci0", "BlueZ adapter to scan on (a USB dongle is usually hci1)")
    scanning_mode: Literal["passive", "active"] = doc(
        "passive", "'passive' needs BlueZ advertisement monitors (falls back to active); 'active' sends scan requests"
    )
    scanner_id: str = doc("ble-1", "device id the scanner's zone events are attributed to", _device_id)
    zone_id: str = doc("store", "the zone this scanner covers (presence is per zone, not per metre)", _zone_id)
    watchdog_s: float = doc(30.0, "restart the scanner after this many seconds without an advertisement", _positive)
    app_uuid: str = doc(DEFAULT_APP_UUID, "iBeacon UUID under which the store app advertises rotating ids", _uuid)
    rotation_window_s: int = doc(900, "rotating id window length in seconds (must match the app)", _positive)
    low_battery_mv: int = doc(2500, "report a beacon as low_battery below this TLM battery voltage (mV)", _positive)
    silent_after_s: float = doc(600.0, "report a store beacon as silent after this many seconds unheard", _positive)


@dataclass(frozen=True)
class PresenceConfig:
    enter_dbm: float = doc(-70.0, "trimmed-mean RSSI (dBm) at or above which a subject enters a zone")
    exit_dbm: float = doc(-80.0, "trimmed-mean RSSI (dBm) below which it leaves; must be below enter_dbm")
    window_s: float = doc(10.0, "seconds of RSSI readings averaged", _positive)
    trim_fraction: float = doc(
        0.2,
        "share of the highest and of the lowest readings dropped before averaging",
        lambda v: None if 0 <= v < 0.5 else "must be within [0, 0.5)",
    )
    min_samples: int = doc(3, "readings needed in the window before a decision", _positive)
    exit_timeout_s: float = doc(30.0, "a subject unheard this long has left the zone", _positive)

    def __post_init__(self) -> None:
        if self.exit_dbm >= self.enter_dbm:
            raise ValueError("presence.exit_dbm must be lower than presence.enter_dbm (hysteresis)")


def _codec(value: str) -> str | None:
    return None if is_single_byte_codec(value) else "must be a single-byte Python codec name such as cp437 or cp858"


def _display_code_page(value: str) -> str | None:
    if not is_single_byte_codec(value) or code_page_number(value) is None:
        return "must be a code page the display can select with ESC t, such as cp437, cp850, cp858 or cp1252"
    return None


def _country(value: str) -> str | None:
    return None if value in COUNTRIES else f"must be one of {', '.join(COUNTRIES)}"


def _pattern_with(*groups: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            ReceiptGrammar(**{_GRAMMAR_FIELD[groups]: value})  # type: ignore[arg-type]
        except ValueError as exc:
            return str(exc)
        return None

    return check


_GRAMMAR_FIELD = {("name", "amount"): "item", ("amount",): "total", ("number",): "loyalty"}


@dataclass(frozen=True)
class PosConfig:
    source: Literal["off", "serial", "simulated"] = doc(
        "off", "POS input: 'off', 'serial' (the ports below) or 'simulated' (a pty from edge simulate)"
    )
    device_id: str = doc("pos-1", "device id of this till", _device_id)
    basket_port: str = doc("", "serial port of the framed basket protocol, e.g. /dev/edge-pos0 ('' = none)")
    receipt_port: str = doc("", "serial port tapping the receipt printer line, e.g. /dev/edge-pos1 ('' = none)")
    display_port: str = doc("", "serial port of the 2x20 customer pole display, e.g. /dev/edge-display0 ('' = none)")
    baudrate: int = doc(9600, "baud rate of all three ports (8N1)", _positive)
    display_width: int = doc(20, "characters per pole display row", _positive)
    max_backoff_s: float = doc(30.0, "longest wait between reconnect attempts after an unplug", _positive)
    receipt_code_page: str = doc(
        "cp437", "code page of receipt text until the POS selects another with ESC t (a Python codec name)", _codec
    )
    currency_symbols: list[str] = doc(
        ["£", "€", "$"], "currency symbols an amount on a receipt may carry, before or after the number"
    )
    decimal_separator: Literal[".", ","] = doc(".", "decimal separator of receipt amounts ('.' or ',')")
    receipt_item_pattern: str = doc(
        DEFAULT_ITEM,
        "regex of an item line: groups name, amount ({amount}), optional qty and sku",
        _pattern_with("name", "amount"),
    )
    receipt_total_pattern: str = doc(
        DEFAULT_TOTAL, "regex of the total line: group amount ({amount})", _pattern_with("amount")
    )
    receipt_loyalty_pattern: str = doc(
        DEFAULT_LOYALTY, "regex of the loyalty number line: group number", _pattern_with("number")
    )
    display_command_set: Literal["epson", "cd5220"] = doc(
        "epson", "pole display commands: 'epson' (ESC/POS customer display, DM-D) or 'cd5220'"
    )
    display_code_page: str = doc(
        "cp437",
        "character table selected on the display (epson: ESC t); text outside it is transliterated",
        _display_code_page,
    )
    display_country: str = doc(
        "usa",
        "national character set of the display (epson ESC R / cd5220 ESC f): usa, uk, germany, france",
        _country,
    )
    display_idle_s: float = doc(120.0, "clear the pole display after this many seconds without a new offer", _positive)

    def receipt_grammar(self) -> ReceiptGrammar:
        return ReceiptGrammar(
            item=self.receipt_item_pattern, total=self.receipt_total_pattern, loyalty=self.receipt_loyalty_pattern,
            currency_symbols=tuple(self.currency_symbols), decimal_separator=self.decimal_separator,
        )  # fmt: skip


@dataclass(frozen=True)
class CameraConfig:
    source: Literal["off", "capture", "simulated"] = doc(
        "off", "camera input: 'off', 'capture' (uri below) or 'simulated' (generated frames)"
    )
    device_id: str = doc("cam-1", "device id of this camera", _device_id)
    uri: str = doc("0", "V4L2 index ('0'), device path, video file or rtsp:// URL")
    fps: float = doc(2.0, "frames analysed per second (keep low: QR and counting need little)", _positive)
    qr_public_key: str = doc(
        "", "base64 Ed25519 public key of the app backend that signs sign-in QR codes ('' = QR sign-in off)"
    )
    qr_max_lifetime_s: int = doc(300, "refuse sign-in tokens valid for longer than this", _positive)
    nonce_cache_size: int = doc(4096, "sign-in nonces remembered to refuse replays", _positive)
    audience: bool = doc(True, "count people in view (anonymous) and report Audience Measured")
    audience_interval_s: float = doc(30.0, "seconds between Audience Measured events", _positive)
    min_blob_area_px: int = doc(300, "smallest moving blob counted as a person, at 320 px width", _positive)


CONFIG_SECTIONS: dict[str, type] = {
    "ble": BleConfig,
    "presence": PresenceConfig,
    "pos": PosConfig,
    "camera": CameraConfig,
}
