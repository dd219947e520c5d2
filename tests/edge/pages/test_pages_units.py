"""The dashboard's overview and pairing, without a browser: what the listener remembers of each
device and beacon, rates and p99 from real prometheus_client metrics, pairing's expiry and bound."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from support.gateway import make_config

from edge import schema
from edge.bus import Source
from edge.events import parse_event
from edge.pages.overview import DeviceWatch, Overview
from edge.pairing import MAX_PENDING, TTL_S, Pairing, PairingError
from edge.registry import DeviceRegistry


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _event(device: str, kind: str, name: str, props: dict, at_ms: int):
    return parse_event({"event": name, "properties": props}, Source("s1", device, kind, "ble"), at_ms)


def test_overview_reports_devices_beacons_rates_and_p99(tmp_path):
    config = make_config(tmp_path / "state")
    clock = Clock()
    metrics = CollectorRegistry()
    accepted = Counter("edge_events_accepted", "", ["transport"], registry=metrics)
    seconds = Histogram("edge_decision_seconds", "", buckets=(0.001, 0.005, 0.025, 1.0), registry=metrics)
    Counter("edge_decisions", "", ["channel", "arm"], registry=metrics)
    with schema.open_journal(config) as journal:
        registry = DeviceRegistry(journal)
        registry.add("kiosk", "kiosk-1")
        registry.add("display", "display-1")
        watch = DeviceWatch()
        overview = Overview(registry=registry, journal=journal, metrics=metrics, watch=watch,
                            versions=lambda: {"model": "m-1"}, clock=clock)  # fmt: skip
        now_ms = int(clock.now * 1000)
        watch.listener([
            _event("kiosk-1", "kiosk", "Device Status", {"status": "online"}, now_ms - 5_000),
            _event("beacon-aa", "beacon", "Device Status", {"status": "low_battery", "batteryMv": 2400}, now_ms - 1_000),
        ])  # fmt: skip
        first = overview.build()
        assert first["rates"]["ingestPerS"] is None  # one sample: no rate yet
        accepted.labels("mqtt").inc(50)
        for value in [0.002] * 98 + [0.02, 0.5]:
            seconds.observe(value)
        clock.now += 10
        second = overview.build()
    assert second["rates"]["ingestPerS"] == 5.0
    assert second["p99Ms"]["decision"] == 25.0  # the bucket bound under which 99 % fall
    assert second["p99Ms"]["journalCommit"] is None  # no such histogram on this gateway
    by_id = {d["deviceId"]: d for d in second["devices"]}
    assert by_id["kiosk-1"]["online"] and by_id["kiosk-1"]["status"] == "online"
    assert not by_id["display-1"]["online"] and by_id["display-1"]["lastSeen"] is None
    assert second["beacons"] == [{"deviceId": "beacon-aa", "kind": "beacon", "enabled": True, "online": True,
                                  "lastSeen": second["beacons"][0]["lastSeen"], "status": "low_battery",
                                  "batteryMv": 2400}]  # fmt: skip
    assert second["versions"] == {"model": "m-1"} and second["certificate"]["expiresInS"] is None
    assert second["consent"] is None and second["erasures"] is None  # no decisioning given: nothing to count


def test_pairing_codes_expire_and_are_bounded(tmp_path):
    config = make_config(tmp_path / "state")
    clock = Clock()
    with schema.open_journal(config) as journal:
        pairing = Pairing(config, DeviceRegistry(journal), journal, clock=clock)
        asked = [pairing.request("display") for _ in range(MAX_PENDING)]
        with pytest.raises(PairingError) as full:
            pairing.request()
        assert full.value.status == 429
        assert len({a["code"] for a in asked}) == MAX_PENDING
        assert all(set(a["code"]) <= set("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for a in asked)
        assert pairing.approve(asked[0]["code"].lower(), "display")["deviceId"] == f"display-{asked[0]['code'].lower()}"
        clock.now += TTL_S + 1
        with pytest.raises(PairingError, match="no pairing"):
            pairing.approve(asked[1]["code"], "display")
        with pytest.raises(PairingError):
            pairing.collect(asked[0]["code"], asked[0]["claim"])  # expired before it was collected
        assert pairing.pending() == []
        assert pairing.request()["code"]  # expired ones no longer count against the bound
        stored = journal.reader().execute("SELECT * FROM pairings").fetchall()
    assert all(asked[0]["claim"] not in str(row) for row in stored)  # only the claim's hash is kept
