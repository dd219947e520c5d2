"""The bleak scanner as an async context manager, and the watchdog loop around it.

:class:`Scanner` converts bleak's types at the boundary into :class:`Advertisement` and calls one
synchronous callback per advertisement — the same callback tests and the simulator call, so the
radio path and the injected path are one path. On Linux it asks BlueZ for a *passive* scan
through an advertisement monitor (which needs ``or_patterns``: we match Apple manufacturer data
and Eddystone service data); where BlueZ cannot (no experimental monitor API), it scans actively.

:func:`run_scanner` is the reconnect loop: a scanner that heard nothing for ``watchdog_s`` is
restarted, with backoff. A failure is logged once when it starts and "recovered" once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from devices.ble.protocol import APPLE_COMPANY_ID
from devices.errors import DeviceUnavailable
from devices.status import TransitionLog
from edge.backoff import backoff_delay, raise_if_cancelled

__all__ = ["Advertisement", "Scanner", "run_scanner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Advertisement:
    address: str
    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]
    rssi_dbm: int


AdvertisementCallback = Callable[[Advertisement], None]


def _passive_patterns() -> list[Any]:
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType

    return [
        OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, APPLE_COMPANY_ID.to_bytes(2, "little")),
        OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe"),
    ]


class Scanner:
    """One running BLE scan. ``last_heard`` (monotonic seconds) feeds the watchdog."""

    def __init__(
        self,
        callback: AdvertisementCallback,
        *,
        adapter: str = "hci0",
        mode: Literal["passive", "active"] = "passive",
    ) -> None:
        self._callback = callback
        self.adapter = adapter
        self.mode = mode
        self.last_heard = time.monotonic()
        self._scanner: Any = None

    def _on_detection(self, device: Any, adv: Any) -> None:
        self.last_heard = time.monotonic()
        self._callback(
            Advertisement(
                address=str(device.address),
                manufacturer_data=dict(adv.manufacturer_data),
                service_data=dict(adv.service_data),
                rssi_dbm=int(adv.rssi),
            )
        )

    async def __aenter__(self) -> Scanner:
        from bleak import BleakScanner
        from bleak.exc import BleakError

        modes: list[Literal["passive", "active"]] = ["passive", "active"] if self.mode == "passive" else ["active"]
        problem: Exception | None = None
        for mode in modes:
            bluez: dict[str, Any] = {"adapter": self.adapter}
            if mode == "passive":
                bluez["or_patterns"] = _passive_patterns()
            try:
                scanner = BleakScanner(self._on_detection, scanning_mode=mode, bluez=bluez)  # type: ignore[arg-type]
                await scanner.start()
            except (BleakError, OSError, ValueError, EOFError) as exc:
                problem = exc
                if mode == "passive":
                    log.info("passive BLE scan unavailable on %s (%s); scanning actively", self.adapter, exc)
                continue
            self._scanner = scanner
            self.last_heard = time.monotonic()
            return self
        raise DeviceUnavailable(f"cannot scan on BLE adapter {self.adapter}: {problem}") from problem

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from bleak.exc import BleakError

        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                await scanner.stop()
            except (BleakError, OSError, EOFError) as stop_error:
                log.debug("stopping the BLE scanner failed: %s", stop_error)


async def run_scanner(
    callback: AdvertisementCallback,
    *,
    adapter: str,
    mode: Literal["passive", "active"],
    watchdog_s: float,
    scanner_factory: Callable[..., Scanner] = Scanner,
    retry_base_s: float = 1.0,
) -> None:
    """Scan forever; restart a scanner that goes quiet for ``watchdog_s``; back off on failure."""
    status = TransitionLog(f"BLE scanner on {adapter}", log)
    attempt = 0
    while True:
        try:
            async with scanner_factory(callback, adapter=adapter, mode=mode) as scanner:
                while True:
                    await asyncio.sleep(min(watchdog_s / 4, 5.0))
                    quiet = time.monotonic() - scanner.last_heard
                    if quiet >= watchdog_s:
                        raise DeviceUnavailable(f"no advertisement for {quiet:.1f} s")
                    if quiet < watchdog_s / 4:
                        status.recovered()
                        attempt = 0
        except DeviceUnavailable as exc:
            status.failed(str(exc))
        raise_if_cancelled()
        await asyncio.sleep(backoff_delay(attempt, base_s=retry_base_s, cap_s=60.0))
        attempt += 1
