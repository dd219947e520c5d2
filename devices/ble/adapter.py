"""From advertisements to events: app presence, zone changes and beacon health.

:meth:`BleIngest.on_advertisement` is the one entry point for radio, tests and the simulator. It
is synchronous (bleak calls it on the event loop) and cheap: parse, resolve, update state, hand
events to the bounded :class:`~devices.outlet.EventOutlet`. Nothing identifying is logged.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from devices.ble.health import BeaconHealth, HealthChange
from devices.ble.presence import PresenceTracker, ZoneChange
from devices.ble.protocol import EddystoneTlm, IBeacon, parse_advertisement
from devices.ble.rotating import RotatingIdResolver
from devices.ble.scanner import Advertisement
from devices.events import iso, track
from devices.outlet import EventOutlet
from edge.bus import Source
from edge.component import Clock, Publisher

__all__ = ["BleIngest"]


class BleIngest:
    def __init__(
        self,
        *,
        store_id: str,
        scanner_id: str,
        zone_id: str,
        app_uuid: uuid.UUID,
        resolver: RotatingIdResolver,
        presence: PresenceTracker,
        health: BeaconHealth,
        outlet: EventOutlet,
        publisher: Publisher | None,
        topic_root: str,
        clock: Clock,
    ) -> None:
        self.store_id = store_id
        self.zone_id = zone_id
        self.app_uuid = app_uuid
        self.resolver = resolver
        self.presence = presence
        self.health = health
        self._outlet = outlet
        self._publisher = publisher
        self._topic_root = topic_root
        self._clock = clock
        self._scanner_source = Source(store_id, scanner_id, "beacon", "ble")
        self._occupancy: dict[str, int] = {}
        self.parse_errors: dict[str, int] = {}
        self.advertisements = 0

    def on_advertisement(self, adv: Advertisement) -> None:
        """Every frame the advertisement carries counts: a store beacon sending iBeacon and
        Eddystone-TLM together is heard once, with its TLM; a malformed part is counted and the
        others are still used."""
        self.advertisements += 1
        now = self._clock()
        parsed = parse_advertisement(adv.manufacturer_data, adv.service_data)
        for error in parsed.errors:
            self.parse_errors[error.reason] = self.parse_errors.get(error.reason, 0) + 1
        store_beacon = False
        tlm: EddystoneTlm | None = None
        for frame in parsed.frames:
            if isinstance(frame, IBeacon) and frame.uuid == self.app_uuid:
                token = self.resolver.resolve(frame.major, frame.minor, now)
                if token is not None:
                    self._zone_change(self.presence.observe(token, self.zone_id, adv.rssi_dbm, now))
                continue
            store_beacon = True
            if isinstance(frame, EddystoneTlm):
                tlm = frame
        if store_beacon:
            change = self.health.heard(_beacon_id(adv.address), now, tlm)
            if change is not None:
                self._health_change(change)

    def tick(self) -> None:
        """Exit timeouts, silent beacons; call about once a second."""
        now = self._clock()
        for change in self.presence.tick(now):
            self._zone_change(change)
        for health in self.health.tick(now):
            self._health_change(health)

    async def run_ticks(self, period_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.tick()

    def forget(self, token: str) -> None:
        self.presence.forget(token)
        self._publish_occupancy()

    def _zone_change(self, change: ZoneChange | None) -> None:
        if change is None:
            return
        properties: dict[str, object] = {"zoneId": change.zone_id}
        if change.rssi_dbm is not None:
            properties["rssiDbm"] = change.rssi_dbm
        if change.dwell_s is not None:
            properties["dwellSeconds"] = change.dwell_s
        name = "Zone Entered" if change.entered else "Zone Exited"
        self._outlet.offer(self._scanner_source, track(name, change.at_s, properties, user_id=change.subject))
        self._publish_occupancy()

    def _publish_occupancy(self) -> None:
        occupancy = self.presence.occupancy()
        if self._publisher is None:
            self._occupancy = occupancy
            return
        for zone_id in set(occupancy) | set(self._occupancy):
            count = occupancy.get(zone_id, 0)
            if self._occupancy.get(zone_id) == count:
                continue
            payload = json.dumps({"zoneId": zone_id, "count": count, "updatedAt": iso(self._clock())})
            self._publisher.publish(f"{self._topic_root}zones/{zone_id}/presence", payload, retain=True)
        self._occupancy = occupancy

    def _health_change(self, change: HealthChange) -> None:
        properties: dict[str, object] = {"status": change.status}
        if change.battery_mv is not None:
            properties["batteryMv"] = change.battery_mv
        if change.temperature_c is not None:
            properties["temperatureC"] = change.temperature_c
        source = Source(self.store_id, change.beacon_id, "beacon", "ble")
        self._outlet.offer(source, track("Device Status", change.at_s, properties))


def _beacon_id(address: str) -> str:
    """Store beacons are fixed and use static addresses; their frames (UID, URL, TLM) share it."""
    return "ble-" + address.replace(":", "").lower()
