"""Beacon health from Eddystone-TLM and silence. Pure; reports transitions only.

A beacon is ``low_battery`` when its TLM battery voltage drops under the threshold, ``silent``
when nothing was heard from it for ``silent_after_s``, and ``ok`` again when it recovers. Each
change is reported once, so a dying beacon yields one ``Device Status`` event, not one per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.ble.protocol import EddystoneTlm

__all__ = ["BeaconHealth", "HealthChange"]


@dataclass(frozen=True, slots=True)
class HealthChange:
    beacon_id: str
    status: str  # ok | low_battery | silent
    at_s: float
    battery_mv: int | None = None
    temperature_c: float | None = None


class BeaconHealth:
    def __init__(self, low_battery_mv: int, silent_after_s: float) -> None:
        self.low_battery_mv = low_battery_mv
        self.silent_after_s = silent_after_s
        self._status: dict[str, str] = {}
        self._last_heard: dict[str, float] = {}
        self._battery: dict[str, int | None] = {}

    def heard(self, beacon_id: str, now_s: float, tlm: EddystoneTlm | None = None) -> HealthChange | None:
        self._last_heard[beacon_id] = now_s
        if tlm is not None:
            self._battery[beacon_id] = tlm.battery_mv
        battery = self._battery.get(beacon_id)
        status = "low_battery" if battery is not None and battery < self.low_battery_mv else "ok"
        previous = self._status.get(beacon_id)
        self._status[beacon_id] = status
        if previous == status or (previous is None and status == "ok"):
            return None
        return HealthChange(beacon_id, status, now_s, battery, tlm.temperature_c if tlm is not None else None)

    def tick(self, now_s: float) -> list[HealthChange]:
        changes = []
        for beacon_id, last in self._last_heard.items():
            if now_s - last >= self.silent_after_s and self._status.get(beacon_id) != "silent":
                self._status[beacon_id] = "silent"
                changes.append(HealthChange(beacon_id, "silent", now_s, self._battery.get(beacon_id)))
        return changes
