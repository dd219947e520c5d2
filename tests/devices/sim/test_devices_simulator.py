"""The store simulator against a real in-process gateway (managed Mosquitto, journal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.gateway import make_config, register, running_gateway

from devices.sim import DEMO_CONFIG, Fleet, FleetDevice, SimClock, load_fleet, load_products, run_simulation
from devices.sim.catalog import Product
from edge import schema

pytestmark = pytest.mark.integration


def test_fleet_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"store_id": "s1", "broker": {"host": "127.0.0.1", "port": 1999}, "http": "http://x",
                                "devices": [{"kind": "kiosk", "device_id": "k1", "mqtt_password": "p", "http_token": "t"}]}))  # fmt: skip
    assert load_fleet(path) == Fleet("s1", "127.0.0.1", 1999, "http://x", (FleetDevice("kiosk", "k1", "p", "t"),))
    path.write_text("{}")
    with pytest.raises(ValueError, match="edge demo"):
        load_fleet(path)


def test_catalog_from_csv_or_generated(tmp_path: Path) -> None:
    csv_path = tmp_path / "catalog.csv"
    csv_path.write_text("sku,name,category,price,margin\nA1,Apple,produce,0.5,0.3\n")
    assert load_products(csv_path) == [Product("A1", "Apple", "produce", 50)]
    generated = load_products(tmp_path / "missing.csv", seed=3)
    assert len(generated) == 60 and generated == load_products(tmp_path / "missing.csv", seed=3)


def test_simulated_store_drives_every_device_path(tmp_path: Path) -> None:
    config = make_config(tmp_path, **DEMO_CONFIG)
    creds = register(config, [("kiosk", "kiosk-1"), ("display", "display-1"), ("pos", "pos-1")])
    with running_gateway(config, features=("edge.decisioning", "devices")) as handle:
        host, port = handle.broker
        fleet = Fleet(config.store.id, host, port, handle.http, tuple(
            FleetDevice(c.kind, c.device_id, c.mqtt_password, c.http_token) for c in creds.values()))  # fmt: skip
        devices = handle.gateway.features.devices
        report = handle.call(
            run_simulation(fleet, devices=devices, hours=0.25, speed=300.0, seed=4, clock=SimClock(300.0)), timeout=60
        )
    assert report.visits >= 3
    assert report.pos_frames > 0 and report.camera_frames > 0
    assert report.events["Consent Updated"] > 0 and report.events["Product Viewed"] > 0
    with schema.open_journal(config) as journal:
        stats = journal.stats()
    by_event = stats["by_event"]
    assert by_event.get("Product Added", 0) > 0 and by_event.get("Order Completed", 0) > 0
    assert by_event.get("Consent Updated", 0) > 0 and by_event.get("Audience Measured", 0) > 0
