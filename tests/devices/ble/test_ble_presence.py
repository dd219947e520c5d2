from __future__ import annotations

import asyncio
import csv
import os

import pytest
from devices_helpers import FIXTURES, RecordingBus, RecordingPublisher

from devices.ble.adapter import BleIngest
from devices.ble.health import BeaconHealth, HealthChange
from devices.ble.presence import PresenceSettings, PresenceTracker, trimmed_mean
from devices.ble.protocol import EddystoneTlm
from devices.ble.rotating import RotatingIdResolver, major_minor, rotating_id, window_index
from devices.ble.scanner import Advertisement
from devices.outlet import EventOutlet

TOKEN = "ct_" + "a" * 32
OTHER = "ct_" + "b" * 32
APP_UUID = "6f1c3a52-7e1b-4c8e-9a0d-5e2b8c4d1f70"


def _trace() -> list[tuple[float, float]]:
    with open(FIXTURES / "ble" / "rssi_trace_zone_edge.csv") as f:
        rows = [r for r in f if not r.startswith("#")]
    return [(float(r["t_s"]), float(r["rssi_dbm"])) for r in csv.DictReader(rows)]


def test_trimmed_mean_drops_outliers() -> None:
    assert trimmed_mean([-60, -61, -62, -10, -120], 0.2) == pytest.approx(-61)


def test_replayed_trace_enters_and_exits_exactly_twice() -> None:
    tracker = PresenceTracker(PresenceSettings())
    changes = []
    for t, rssi in _trace():
        changes.extend(tracker.tick(t))
        change = tracker.observe(TOKEN, "entrance", rssi, t)
        if change is not None:
            changes.append(change)
    changes.extend(tracker.tick(1000.0))
    assert [(c.entered, c.zone_id) for c in changes] == [
        (True, "entrance"), (False, "entrance"), (True, "entrance"), (False, "entrance"),
    ]  # fmt: skip
    first_in, first_out, second_in, second_out = changes
    assert 100 <= first_in.at_s <= 106  # not during the noisy edge before it
    assert 260 <= first_out.at_s <= 268  # hysteresis held it inside through the second edge
    assert first_out.dwell_s == pytest.approx(first_out.at_s - first_in.at_s, abs=0.1)
    assert 400 <= second_in.at_s <= 403
    assert second_out.at_s == 449.5 and second_out.rssi_dbm is None  # exit timeout, last heard
    assert tracker.occupancy() == {}


def test_hysteresis_must_be_a_band() -> None:
    with pytest.raises(ValueError):
        PresenceSettings(enter_dbm=-80, exit_dbm=-70)


def test_rotating_id_resolves_only_with_the_right_key_and_window() -> None:
    key, other_key = bytes(range(32)), bytes(range(1, 33))
    window_s = 900
    resolver = RotatingIdResolver(lambda: [(TOKEN, key), (OTHER, other_key)], window_s)
    now = 1_790_000_000.0
    w = window_index(now, window_s)
    assert resolver.resolve(*major_minor(key, w), now) == TOKEN
    assert resolver.resolve(*major_minor(key, w - 1), now) == TOKEN  # phone clock behind
    assert resolver.resolve(*major_minor(key, w + 1), now) == TOKEN  # phone clock ahead
    assert resolver.resolve(*major_minor(key, w + 2), now) is None  # outside ± 1
    assert resolver.resolve(*major_minor(bytes(32), w), now) is None  # unregistered key
    assert resolver.resolve(*major_minor(other_key, w), now) == OTHER
    assert resolver.unknown == 2
    # a passer-by sees unrelated values from one window to the next
    assert len({rotating_id(key, i) for i in range(w, w + 50)}) == 50


def _ingest(bus: RecordingBus, clock: list[float], keys: list[tuple[str, bytes]]):
    import uuid

    outlet = EventOutlet(bus)
    publisher = RecordingPublisher()
    ingest = BleIngest(
        store_id="s1", scanner_id="ble-1", zone_id="entrance", app_uuid=uuid.UUID(APP_UUID),
        resolver=RotatingIdResolver(lambda: keys, 900),
        presence=PresenceTracker(PresenceSettings(exit_timeout_s=20)),
        health=BeaconHealth(low_battery_mv=2500, silent_after_s=60),
        outlet=outlet, publisher=publisher, topic_root="retail/v1/s1/", clock=lambda: clock[0],
    )  # fmt: skip
    return ingest, outlet, publisher


def _app_adv(key: bytes, now: float, rssi: int) -> Advertisement:
    major, minor = major_minor(key, window_index(now, 900))
    data = bytes.fromhex("0215") + bytes.fromhex(APP_UUID.replace("-", ""))
    data += major.to_bytes(2, "big") + minor.to_bytes(2, "big") + b"\xc3"
    return Advertisement("5A:11:22:33:44:55", {0x004C: data}, {}, rssi)


def test_ingest_emits_zone_events_and_retained_presence(bus: RecordingBus) -> None:
    key = os.urandom(32)
    clock = [1_790_000_000.0]
    ingest, outlet, publisher = _ingest(bus, clock, [(TOKEN, key)])
    for _ in range(6):
        ingest.on_advertisement(_app_adv(key, clock[0], -60))
        ingest.on_advertisement(_app_adv(os.urandom(32), clock[0], -50))  # someone not opted in
        clock[0] += 1
    clock[0] += 30
    ingest.tick()
    asyncio.run(outlet.drain())
    entered, exited = bus.named("Zone Entered"), bus.named("Zone Exited")
    assert len(entered) == 1 and len(exited) == 1 and len(bus.events) == 2
    assert entered[0]["userId"] == TOKEN and entered[0]["properties"]["zoneId"] == "entrance"
    assert exited[0]["properties"]["dwellSeconds"] == 3.0
    assert ingest.resolver.unknown == 6
    source = bus.batches[0][0]
    assert (source.kind, source.transport, source.device_id) == ("beacon", "ble", "ble-1")
    topics = [(t, p, r) for t, p, r in publisher.messages]
    assert [t for t, _, _ in topics] == ["retail/v1/s1/zones/entrance/presence"] * 2
    assert all(r for _, _, r in topics) and '"count": 0' in topics[-1][1]
    assert TOKEN not in "".join(str(p) for _, p, _ in topics)  # presence topic carries counts only


def test_beacon_health_reports_transitions_once() -> None:
    health = BeaconHealth(low_battery_mv=2500, silent_after_s=60)
    good = EddystoneTlm(3000, 21.0, 1, 1.0)
    low = EddystoneTlm(2100, 21.0, 2, 2.0)
    assert health.heard("b1", 0, good) is None
    assert health.heard("b1", 10, low) == HealthChange("b1", "low_battery", 10, 2100, 21.0)
    assert health.heard("b1", 20, low) is None
    assert health.tick(50) == []
    assert health.tick(80) == [HealthChange("b1", "silent", 80, 2100)]
    assert health.tick(90) == []
    assert health.heard("b1", 95, good) == HealthChange("b1", "ok", 95, 3000, 21.0)


def test_tlm_through_the_callback_path_becomes_device_status(bus: RecordingBus) -> None:
    clock = [1_790_000_000.0]
    ingest, outlet, _ = _ingest(bus, clock, [])
    tlm = bytes.fromhex("2000083480000100000000 0D2F00".replace(" ", ""))
    ingest.on_advertisement(Advertisement("C0:FF:EE:00:00:01", {}, {"0000feaa-0000-1000-8000-00805f9b34fb": tlm}, -70))
    ingest.on_advertisement(
        Advertisement("C0:FF:EE:00:00:02", {}, {"0000feaa-0000-1000-8000-00805f9b34fb": b"\x20"}, -70)
    )
    asyncio.run(outlet.drain())
    (status,) = bus.named("Device Status")
    assert status["properties"] == {"status": "low_battery", "batteryMv": 2100}
    assert bus.batches[0][0].device_id == "ble-c0ffee000001"
    assert ingest.parse_errors == {"truncated": 1}
