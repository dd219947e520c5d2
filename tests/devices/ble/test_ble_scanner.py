"""The bleak boundary, with bleak's scanner replaced by a fake (no radio here)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import bleak
import pytest
from bleak.exc import BleakError

from devices.ble.scanner import Advertisement, Scanner
from devices.errors import DeviceUnavailable


class FakeBleakScanner:
    created: list[dict[str, Any]] = []
    refuse: set[str] = set()

    def __init__(self, callback: Any, *, scanning_mode: str, bluez: dict[str, Any]) -> None:
        self.callback = callback
        self.mode = scanning_mode
        FakeBleakScanner.created.append({"mode": scanning_mode, **bluez})

    async def start(self) -> None:
        if self.mode in FakeBleakScanner.refuse:
            raise BleakError(f"{self.mode} scanning is not available")

    async def stop(self) -> None:
        return None


@pytest.fixture(autouse=True)
def fake_bleak(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBleakScanner.created = []
    FakeBleakScanner.refuse = set()
    monkeypatch.setattr(bleak, "BleakScanner", FakeBleakScanner)


def test_passive_scan_with_or_patterns_and_vendor_types_converted() -> None:
    heard: list[Advertisement] = []

    async def main() -> None:
        async with Scanner(heard.append, adapter="hci1", mode="passive") as scanner:
            device = SimpleNamespace(address="AA:BB:CC:DD:EE:FF")
            adv = SimpleNamespace(manufacturer_data={0x004C: b"\x02\x15"}, service_data={}, rssi=-61)
            scanner._on_detection(device, adv)

    asyncio.run(main())
    (created,) = FakeBleakScanner.created
    assert created["mode"] == "passive" and created["adapter"] == "hci1"
    assert [p.content_of_pattern for p in created["or_patterns"]] == [b"\x4c\x00", b"\xaa\xfe"]
    assert heard == [Advertisement("AA:BB:CC:DD:EE:FF", {0x004C: b"\x02\x15"}, {}, -61)]


def test_falls_back_to_active_where_bluez_cannot_scan_passively() -> None:
    FakeBleakScanner.refuse = {"passive"}

    async def main() -> None:
        async with Scanner(lambda adv: None, adapter="hci0", mode="passive"):
            pass

    asyncio.run(main())
    assert [c["mode"] for c in FakeBleakScanner.created] == ["passive", "active"]
    assert "or_patterns" not in FakeBleakScanner.created[1]


def test_no_adapter_becomes_device_unavailable() -> None:
    FakeBleakScanner.refuse = {"passive", "active"}

    async def main() -> None:
        async with Scanner(lambda adv: None, adapter="hci0", mode="passive"):
            pass

    with pytest.raises(DeviceUnavailable, match="hci0"):
        asyncio.run(main())
