"""The devices component wired like the gateway wires it: real Ingestor over a real Journal."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import tty
from pathlib import Path
from typing import Any

import pytest
from devices_helpers import RecordingPublisher

import devices
from devices.ble.rotating import major_minor, window_index
from devices.ble.scanner import Advertisement
from devices.component import DevicesComponent, build
from devices.config import CONFIG_SECTIONS
from devices.pos.protocol import ItemAdded, LoyaltyCard, OrderCompleted, encode_frame
from edge.bus import Source
from edge.component import GatewayContext
from edge.config import parse_config
from edge.ingest import Ingestor
from edge.journal import Journal
from edge.metrics import IngestMetrics

TOKEN = "ct_" + "c" * 32
NOW = 1_790_000_000.0


class FakeIdentity:
    """Stands in for the identity pre-stage: identifiers → a fixed token."""

    name = "identity"

    def stage(self, raw: dict[str, Any], source: Source) -> dict[str, Any]:
        props = raw.get("properties")
        if isinstance(props, dict) and "identifiers" in props:
            props = dict(props)
            props.pop("identifiers")
            raw = {**raw, "properties": props, "userId": TOKEN}
        return raw


def _context(
    tmp_path: Path, sections: dict[str, dict[str, Any]], clock: list[float]
) -> tuple[GatewayContext, Ingestor, Journal, RecordingPublisher]:
    journal = Journal(tmp_path / "journal.db", synchronous="normal", migrations=devices.MIGRATIONS)
    ingestor = Ingestor(journal, IngestMetrics(), clock=lambda: clock[0])
    config = parse_config(sections, CONFIG_SECTIONS, {})
    publisher = RecordingPublisher()
    ctx = GatewayContext(
        config=config, state_dir=tmp_path, journal=journal, bus=ingestor, publisher=publisher,
        metrics=None, clock=lambda: clock[0], store_id="s1",  # type: ignore[arg-type]
    )  # fmt: skip
    return ctx, ingestor, journal, publisher


def _wire(component: DevicesComponent, ingestor: Ingestor) -> None:
    ingestor.pre_stages.append(FakeIdentity().stage)
    ingestor.attach(component)
    ingestor.start()


def _stored(journal: Journal) -> list[dict[str, Any]]:
    with journal.connection() as conn:
        return [json.loads(r[0]) for r in conn.execute("SELECT body FROM events ORDER BY seq")]


def test_defaults_build_nothing_and_run_returns_nothing_to_do(tmp_path: Path) -> None:
    clock = [NOW]
    ctx, _, journal, _ = _context(tmp_path, {}, clock)
    component = build(ctx)
    assert component.name == "devices"
    assert (component.ble, component.pos, component.camera) == (None, None, None)
    assert "devices-0001-app-keys" in journal.applied_migrations()
    journal.close()


def test_app_key_is_taken_out_of_consent_and_bound_to_the_token(tmp_path: Path) -> None:
    clock = [NOW]
    ctx, ingestor, journal, publisher = _context(tmp_path, {"ble": {"source": "simulated"}}, clock)
    component = build(ctx)
    _wire(component, ingestor)
    key = os.urandom(32)
    consent = {
        "messageId": "0190f0a0-0000-7000-8000-000000000001", "event": "Consent Updated",
        "properties": {"categoryPreferences": {"personalization": True},
                       "identifiers": {"email": "a@example.com"},
                       "appPresenceKey": base64.urlsafe_b64encode(key).decode().rstrip("=")},
    }  # fmt: skip

    async def main() -> None:
        kiosk = Source("s1", "kiosk-1", "kiosk", "mqtt")
        await ingestor.publish(kiosk, [consent])
        for _ in range(100):  # listeners run in the writer thread just after the commit
            if component.app_keys.items():
                break
            await asyncio.sleep(0.01)
        assert component.app_keys.items() == [(TOKEN, key)]
        runner = asyncio.create_task(component.run())
        assert component.ble is not None
        for i in range(5):
            clock[0] = NOW + i
            major, minor = major_minor(key, window_index(clock[0], 900))
            data = (
                b"\x02\x15"
                + component.ble.app_uuid.bytes
                + major.to_bytes(2, "big")
                + minor.to_bytes(2, "big")
                + b"\xc5"
            )
            component.ble.on_advertisement(Advertisement("7A:00:00:00:00:01", {0x004C: data}, {}, -58))
        await asyncio.sleep(0.3)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    asyncio.run(main())
    ingestor.stop()
    stored = _stored(journal)
    assert "appPresenceKey" not in json.dumps(stored)  # the key never reaches the journal
    entered = [e for e in stored if e.get("event") == "Zone Entered"]
    assert len(entered) == 1 and entered[0]["userId"] == TOKEN and entered[0]["channel"] == "ble"
    assert publisher.messages[-1][0] == "retail/v1/s1/zones/store/presence"
    component.forget(TOKEN)
    assert component.app_keys.items() == []
    journal.close()


def test_simulated_pos_through_a_pty_reaches_the_journal(tmp_path: Path) -> None:
    clock = [NOW]
    ctx, ingestor, journal, _ = _context(tmp_path, {"pos": {"source": "simulated"}}, clock)
    component = build(ctx)
    _wire(component, ingestor)

    async def main() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        runner = asyncio.create_task(component.run())
        component.attach_pos_ports(os.ttyname(slave))
        for record in (LoyaltyCard("6012345678901234"), ItemAdded("OAT-1L", 2, 199), OrderCompleted("T-1", 398)):
            os.write(master, encode_frame(record))
        for _ in range(200):
            if len(_stored(journal)) == 3:
                break
            await asyncio.sleep(0.02)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        os.close(master)
        os.close(slave)

    asyncio.run(main())
    ingestor.stop()
    stored = _stored(journal)
    assert [e["event"] for e in stored] == ["Customer Identified", "Product Added", "Order Completed"]
    assert all(e["channel"] == "pos" and e["deviceId"] == "pos-1" for e in stored)
    assert "6012345678901234" not in json.dumps(stored)  # identity stage replaced it with a token
    assert stored[2]["userId"] == TOKEN
    journal.close()


def test_counters_are_exported_to_prometheus(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    clock = [NOW]
    ctx, _, journal, _ = _context(tmp_path, {"ble": {"source": "simulated"}, "pos": {"source": "simulated"}}, clock)
    ctx = dataclasses.replace(ctx, metrics=CollectorRegistry())
    component = build(ctx)
    assert component.pos is not None and component.ble is not None
    component.pos.on_basket_bytes(b"noise" + encode_frame(ItemAdded("A1", 1, 100)))
    component.ble.on_advertisement(
        Advertisement("C0:FF:EE:00:00:02", {}, {"0000feaa-0000-1000-8000-00805f9b34fb": b"\x20"}, -70)
    )
    text = generate_latest(ctx.metrics).decode()
    assert 'edge_pos_frames_total{outcome="ok"} 1.0' in text
    assert "edge_pos_garbage_bytes_total 5.0" in text
    assert 'edge_ble_parse_errors_total{reason="truncated"} 1.0' in text
    assert 'edge_device_events_total{outcome="dropped_queue_full"} 0.0' in text
    journal.close()
