"""Erasure that is immediate and final, raced: the person's devices keep sending over HTTP
(httpx) and MQTT (paho, QoS 1) — events by token and by raw e-mail, a consent re-grant, events
of the visit they identified in, decision requests — while ``edge forget`` runs as a subprocess
against the running gateway (its control socket). After it returns: no trace of them — token,
raw identifiers, the visit id, a unique property value — in the journal file (free pages
included), its WAL, the broker's persistence, the logs, the dead letters, or anything the
Segment-style receiver gets from then on; the receiver does get the erasure confirmation.
"""

from __future__ import annotations

import json
import random
import stat
import string
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.gateway import wait_until
from support.privacy import RAW_EMAIL, RAW_NEEDLES, scan_for

from .live import Store, live_store, mqtt_device

pytestmark = pytest.mark.integration

EDGE = Path(sys.executable).with_name("edge")
FEATURES = ("edge.model", "edge.decisioning", "devices", "sync")


def _letters(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice(string.ascii_lowercase) for _ in range(n))


def _person_events(token: str, visit: str, note: str, n: int) -> list[dict[str, Any]]:
    return [
        {"event": "Product Viewed", "userId": token, "properties": {"sku": "SKU00003", "note": note}},
        {
            "event": "Product Added",
            "properties": {"sku": "SKU00004", "note": note, "identifiers": {"email": RAW_EMAIL}},
        },
        {
            "event": "Consent Updated",
            "userId": token,
            "messageId": f"regrant-{n}-{time.monotonic_ns()}",
            "properties": {"categoryPreferences": {"cdp_sync": True, "personalization": True}},
        },
        {"event": "Product Viewed", "anonymousId": visit, "properties": {"sku": "SKU00005", "note": note}},
    ]


def _sender(
    store: Store, stop: threading.Event, sent: list[float], send: Any, token: str, visit: str, note: str
) -> None:
    n = 0
    while not stop.is_set():
        send(_person_events(token, visit, note, n))
        sent.append(time.time())
        n += 1


def test_erasure_race_leaves_no_trace(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rnd = random.Random()
    note = "bought-red-shoes-" + _letters(rnd, 16)
    visit = "visit-" + _letters(rnd, 16)
    with live_store(tmp_path, features=FEATURES) as store:
        decisioning: Any = store.gateway.gateway.features.decisioning
        token = decisioning.identity.token("email", RAW_EMAIL)
        needles = [token, token[3:], visit, note, *RAW_NEEDLES]
        toml = tmp_path / "gateway.toml"
        toml.write_text(f'[store]\nid = "s1"\nstate_dir = "{store.state_dir}"\n')
        with store.http() as http, mqtt_device(store, "kiosk-2") as device:
            # before: a consenting person with history in every derived table
            reply = http.post(
                "/v1/consent",
                headers=store.auth("kiosk-1"),
                json={
                    "identifiers": {"email": RAW_EMAIL},
                    "purposes": {"personalization": True, "analytics": True, "cdp_sync": True},
                },
            )
            assert reply.status_code == 200, reply.text
            store.post_events(
                http,
                "kiosk-1",
                [  # the visit before signing in
                    {"event": "Product Viewed", "anonymousId": visit, "properties": {"sku": "SKU00001", "note": note}}
                ],
            )
            device.send(
                [{"event": "Customer Identified", "userId": token, "anonymousId": visit, "messageId": "identified-1"}],
                committed=True,
            )
            device.send(_person_events(token, visit, note, -1))
            answer = store.post_events(
                http,
                "kiosk-1",
                [  # refused before the erasure: a dead letter
                    {"event": "Not An Event", "userId": token, "properties": {"note": note}}
                ],
            )
            assert answer["rejected"][0]["reason"] == "unknown_event"
            decision = http.post(
                "/v1/decisions",
                headers=store.auth("kiosk-1"),
                json={"userId": token, "anonymousId": visit, "basket": ["SKU00002"]},
            )
            assert decision.status_code == 200 and decision.json()["personalized"]
            store.gateway.gateway.features.devices.app_keys.register(token, bytes(32))  # type: ignore[attr-defined]
            wait_until(store.synced, timeout=60)
            wait_until(lambda: bool(store.cdp.bodies("instr(body, ?) > 0", token)), timeout=30)
            assert scan_for([store.state_dir], [token]) != []  # the scan sees a token that is there

            # the race: both devices keep sending while edge forget runs
            stop = threading.Event()
            sent_http: list[float] = []
            sent_mqtt: list[float] = []
            threads = [
                threading.Thread(target=_sender, args=(store, stop, sent_http,
                                 lambda events: store.post_events(http, "kiosk-1", events), token, visit, note)),
                threading.Thread(target=_sender, args=(store, stop, sent_mqtt, device.send, token, visit, note)),
            ]  # fmt: skip
            for thread in threads:
                thread.start()
            time.sleep(0.3)
            control_socket = store.state_dir / "control.sock"
            assert stat.S_IMODE(control_socket.stat().st_mode) == 0o600 and control_socket.is_socket()
            forget = subprocess.run(
                [str(EDGE), "forget", token, "--config", str(toml), "--request-id", "race-1"],
                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            returned = time.time()
            assert forget.returncode == 0, forget.stderr
            assert "by the running gateway" in forget.stdout
            # at once, in the running process: suppressed, no profile, no consent, anonymous answers
            assert decisioning.is_suppressed(token) and decisioning.is_suppressed(visit)
            assert decisioning.profiles.get(token) is None and not decisioning.consent.records(token)
            time.sleep(1.0)
            stop.set()
            for thread in threads:
                thread.join(30)
            # one device's messages are handled in order: once this is committed, all were
            device.send(
                [{"event": "Audience Measured", "messageId": "mqtt-marker", "properties": {"count": 1}}], committed=True
            )
            assert sum(t > returned for t in sent_http) > 0 and sum(t > returned for t in sent_mqtt) > 0
            late = http.post(
                "/v1/decisions",
                headers=store.auth("kiosk-1"),
                json={"userId": token, "anonymousId": visit, "basket": []},
            )
            assert late.status_code == 200 and not late.json()["personalized"]
            # the confirmation reaches the CDP; nothing of the person does any more (an event
            # about no one, sent now, shows the outbox kept flowing after the erasure)
            store.post_events(
                http, "kiosk-1", [{"event": "Audience Measured", "messageId": "after-1", "properties": {"count": 2}}]
            )
            wait_until(lambda: bool(store.cdp.bodies("message_id = 'after-1'")), timeout=60)
            wait_until(lambda: bool(store.cdp.bodies("event = 'Customer Erased'")), timeout=60)
            wait_until(store.synced, timeout=60)
            confirmation = json.loads(store.cdp.bodies("event = 'Customer Erased'")[0][0])
            assert confirmation["properties"]["requestId"] == "race-1"
            assert "userId" not in confirmation and token not in json.dumps(confirmation)
            afterwards = [body for body, sent_at, _ in store.cdp.bodies()
                          if _epoch(sent_at) >= returned]  # fmt: skip
            assert afterwards, "the receiver got batches after the erasure"
            assert not [b for b in afterwards if any(n.lower() in b.lower() for n in needles)]
            journal = store.gateway.gateway.context.journal  # type: ignore[union-attr]
            refused = store.gateway.gateway.context.metrics  # type: ignore[union-attr]
            assert sum(refused.get_sample_value("edge_events_rejected_total",
                                                {"transport": t, "reason": "suppressed"}) or 0
                       for t in ("http", "mqtt")) > 0  # fmt: skip
            # dead letters of the person: only reason, time and size
            with journal.connection() as conn:
                letters = conn.execute("SELECT source, reason, detail, sha256, excerpt, subject, size"
                                       " FROM dead_letters").fetchall()  # fmt: skip
            assert any(r[1] == "suppressed" for r in letters)
            for row in letters:
                if row[1] in ("suppressed", "unknown_event"):
                    assert row[0] == row[2] == row[3] == row[4] == "" and row[5] is None and row[6] > 0
            # the running gateway's files right now: database (free pages included) and WAL
            assert scan_for([store.state_dir], needles) == []
    # after stop: the broker's persistence file and logs, the journal as the gateway left it
    assert list(store.state_dir.rglob("mosquitto.db")), "the broker saved its persistence file: it is scanned"
    assert scan_for([store.state_dir], needles) == []
    logged = caplog.text.lower()
    assert not [n for n in needles if n.lower() in logged]


def _epoch(sent_at: str | None) -> float:
    return datetime.fromisoformat(str(sent_at).replace("Z", "+00:00")).timestamp()
