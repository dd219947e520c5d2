"""Consent as an ordered log, end to end: interleavings of grants, withdrawals and redeliveries
of old grants sent by real clients — httpx over HTTP, paho over MQTT 5 (QoS 1) — to a real
gateway (managed Mosquitto, the shipped model, sync) whose HTTP sink sends to the Segment-style
receiver. The same generator and model as ``test_consent_log.py`` (seed printed, pin it with
``CONSENT_LOG_SEED``).

What leaves is checked against the moment it left: every event about a person the receiver got
carries the gateway's ``sentAt``; each batch was sent and known committed (the HTTP answer
comes after the commit; for MQTT, whose PUBACK is the broker's, its messageIds were seen in the
journal) one after another, so at ``sentAt`` the changes committed before are in force and the
ones in flight may be. An event that left while the newest choice (by
event time) of every possible prefix of the sends was "no" is a leak.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime
from pathlib import Path

import pytest
from support.gateway import wait_until

from .live import live_store, mqtt_device
from .test_consent_log import Model, _ms, interleaving

pytestmark = pytest.mark.integration

#: 60 in the suite (about 15 s); ``CONSENT_LOG_E2E=1000`` runs all thousand through the gateway
INTERLEAVINGS = int(os.environ.get("CONSENT_LOG_E2E", "60"))
MARGIN_S = 0.05  # the outbox asks the ledger just before it stamps sentAt


def _latest(changes: list[tuple[str, int, bool]]) -> bool:
    model = Model()
    for message_id, ms, granted in changes:
        model.store(message_id, ms, granted)
    return model.allows()


def test_interleavings_over_http_and_mqtt_with_sync_running(tmp_path: Path) -> None:
    seed = int(os.environ.get("CONSENT_LOG_SEED", random.randrange(2**32)))
    print(f"consent log e2e: seed {seed} (CONSENT_LOG_SEED={seed} to repeat)")
    rnd = random.Random(seed)
    with live_store(tmp_path) as store, store.http() as http, mqtt_device(store, "kiosk-2") as device:
        decisioning = store.gateway.gateway.features.decisioning
        models: dict[str, Model] = {}
        # per token: (sent at, acknowledged at, changes in that send)
        log: dict[str, list[tuple[float, float, list[tuple[str, int, bool]]]]] = {}
        for case in range(INTERLEAVINGS):
            token = decisioning.identity.token("loyaltyId", str(50_000 + case))  # type: ignore[attr-defined]
            models[token] = Model()
            for batch in interleaving(rnd, case, token):
                changes = [(e["messageId"], _ms(e["timestamp"]), e["properties"]["categoryPreferences"]["cdp_sync"])
                           for e in batch if e["event"] == "Consent Updated"]  # fmt: skip
                started = time.time()
                if rnd.random() < 0.5:
                    answer = store.post_events(http, "kiosk-1", batch)
                    assert not answer["rejected"], answer
                else:
                    device.send(batch, committed=True)
                log.setdefault(token, []).append((started, time.time(), changes))
                for change in changes:
                    models[token].store(*change)
        wait_until(store.synced, timeout=60)
        received = store.cdp.bodies()
        about = [(json.loads(body), sent_at) for body, sent_at, _ in received]
        leaks = []
        for body, sent_at in about:
            token = body.get("userId")
            if token not in log or body["event"] == "Consent Updated":
                continue
            at = datetime.fromisoformat(str(sent_at).replace("Z", "+00:00")).timestamp()
            # committed when the outbox asked: the sends acknowledged before, maybe the next ones
            ops = log[token]
            first = sum(ack < at - MARGIN_S for _, ack, _ in ops)
            last = sum(start < at for start, _, _ in ops)
            if not any(_latest([c for _, _, cs in ops[:k] for c in cs]) for k in range(first, last + 1)):
                leaks.append((token, body["messageId"], sent_at))
        assert not leaks, f"events left while the newest choice was no (seed {seed}): {leaks[:5]}"
        # the ledger agrees with the model; every first-stored change left, as a bare record
        for token, model in models.items():
            reply = http.get(f"/v1/consent/{token}", headers=store.auth("kiosk-1")).json()
            assert reply["categoryPreferences"]["cdp_sync"] is model.allows(), (seed, token)
        records = {b["messageId"]: b for b, _ in about if b["event"] == "Consent Updated"}
        expected = {mid for model in models.values() for mid in model.changes}
        missing = expected - set(records)
        journal = store.gateway.gateway.context.journal  # type: ignore[union-attr]
        assert not missing, (
            "a grant or withdrawal never reached the CDP",
            seed,
            sorted(missing)[:5],
            [(m, journal.get(m)) for m in sorted(missing)[:2]],
            journal.cursor("http"),
            journal.stats()["max_seq"],
        )
        withdrawals = [r for mid, r in records.items() if mid in expected
                       and r["properties"]["categoryPreferences"]["cdp_sync"] is False]  # fmt: skip
        assert withdrawals, "the interleavings had withdrawals and the CDP got them"
        for record in records.values():
            assert "context" not in record and "anonymousId" not in record
            assert set(record["properties"]) <= {"categoryPreferences", "consentSource", "noticeVersion"}
        sent_data = [b for b, _ in about if b.get("userId") in models and b["event"] != "Consent Updated"]
        assert sent_data, "some events were allowed to leave: the check above is not vacuous"
