"""Consent as an ordered log: 1,000 seeded random interleavings of grants, withdrawals and
redeliveries of old grants, through the real ingestor, journal, decisioning component and the
sync outbox's selection, checked against a model written here from the rule itself:

* a change counts once, when its messageId is stored for the first time;
* per person and purpose the change with the newest event time wins (equal times: the later-stored);
* an event about the person may leave the store only while that newest choice is a grant;
* every first-stored change — withdrawals too — leaves as a bare consent record.

The seed is printed; pin it with ``CONSENT_LOG_SEED=…``. The same interleavings through a real
gateway, Mosquitto and the Segment-style receiver are in ``test_consent_log_e2e.py``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sync.config import SyncConfig
from sync.metrics import SyncMetrics
from sync.outbox import Outbox

from .conftest import Gateway

INTERLEAVINGS = 1000
T0_MS = 1_767_590_000_000  # event times scatter around the test clock's start


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Model:
    """The rule, independently: first-stored changes only; the newest event time wins, equal
    times go to the change stored later."""

    seen: set[str] = field(default_factory=set)
    current: tuple[int, str, bool] | None = None  # (event ms, messageId, granted)
    stale: int = 0

    def store(self, message_id: str, ms: int, granted: bool) -> None:
        if message_id in self.seen:
            return  # a redelivery never counts again
        self.seen.add(message_id)
        if self.current is None or ms >= self.current[0]:
            self.current = (ms, message_id, granted)
        else:
            self.stale += 1

    @property
    def changes(self) -> set[str]:
        return self.seen

    def allows(self) -> bool:
        return self.current is not None and self.current[2]


def consent_event(message_id: str, token: str, ms: int, granted: bool) -> dict[str, Any]:
    return {"type": "track", "event": "Consent Updated", "messageId": message_id, "userId": token,
            "timestamp": iso(ms), "properties": {"categoryPreferences": {"cdp_sync": granted},
                                                 "consentSource": "app"}}  # fmt: skip


def interleaving(rnd: random.Random, case: int, token: str) -> list[list[dict[str, Any]]]:
    """Batches (each one group commit) of grants, withdrawals, redeliveries and data events."""
    sent: list[dict[str, Any]] = []
    batches: list[list[dict[str, Any]]] = []
    for step in range(rnd.randint(3, 9)):
        batch = []
        for _ in range(rnd.choice((1, 1, 1, 2, 3))):
            roll = rnd.random()
            grants = [e for e in sent if e["properties"]["categoryPreferences"]["cdp_sync"]]
            if roll < 0.25 and grants:  # a QoS 1 / HTTP retry of an old grant, bytes unchanged
                event = json.loads(json.dumps(rnd.choice(grants)))
            elif roll < 0.65:
                ms = T0_MS + rnd.randrange(0, 60_000, rnd.choice((1, 1000)))  # ties happen
                event = consent_event(f"c{case}-{step}-{len(sent)}", token, ms, rnd.random() < 0.5)
                sent.append(event)
                event = json.loads(json.dumps(event))
            else:
                event = {
                    "type": "track",
                    "event": "Product Viewed",
                    "userId": token,
                    "messageId": f"v{case}-{step}-{len(batch)}",
                    "properties": {"sku": "SKU00003"},
                }
            batch.append(event)
        batches.append(batch)
    return batches


@pytest.mark.anyio
async def test_thousand_interleavings_obey_the_newest_choice(gateway: Gateway) -> None:
    seed = int(os.environ.get("CONSENT_LOG_SEED", random.randrange(2**32)))
    print(f"consent log interleavings: seed {seed} (CONSENT_LOG_SEED={seed} to repeat)")
    rnd = random.Random(seed)
    gw = gateway
    decisioning = gw.component
    outbox = Outbox(
        gw.journal,
        SyncConfig(),
        lambda u: decisioning.allows(u, "cdp_sync"),
        SyncMetrics(CollectorRegistry()),
        is_erased=decisioning.is_suppressed,
    )
    cursor = 0
    stale_expected = 0
    left_consent: set[str] = set()
    for case in range(INTERLEAVINGS):
        token = decisioning.identity.token("loyaltyId", str(10_000 + case))
        model = Model()
        transport = rnd.choice(("mqtt", "http"))
        for batch in interleaving(rnd, case, token):
            result = await gw.ingestor.publish(gw.source(transport=transport), batch)
            assert not result.rejected, (seed, case, result.rejected)
            for event in batch:
                if event["event"] == "Consent Updated":
                    prefs = event["properties"]["categoryPreferences"]
                    model.store(event["messageId"], _ms(event["timestamp"]), prefs["cdp_sync"])
            assert decisioning.allows(token, "cdp_sync") == model.allows(), (seed, case, model)
            # what the outbox would send right now (it asks the ledger again at send time)
            records = gw.journal.read_after("model", after=cursor, limit=100)
            outbound, _, _ = outbox.select(records, set())
            cursor = records[-1].seq if records else cursor
            for sent in outbound:
                body = json.loads(sent.body)
                if body["event"] == "Consent Updated":
                    assert set(body) <= {
                        "messageId",
                        "type",
                        "event",
                        "userId",
                        "timestamp",
                        "receivedAt",
                        "storeId",
                        "channel",
                        "properties",
                    }
                    assert set(body["properties"]) <= {"categoryPreferences", "consentSource", "noticeVersion"}
                    left_consent.add(body["messageId"])
                else:
                    assert model.allows(), (seed, case, "an event left while the choice was no")
        stale_expected += model.stale
        stored = {
            r[0]
            for r in gw.rows("SELECT message_id FROM events WHERE user_id = ? AND event = 'Consent Updated'", token)
        }
        assert stored == set(model.changes), (seed, case)
        assert stored <= left_consent, "a consent change (grant or withdrawal) never left"
        row = gw.rows(
            "SELECT granted, updated_ms, message_id FROM consent WHERE user_id = ? AND purpose = 'cdp_sync'", token
        )
        now = model.current
        assert row == ([] if now is None else [(int(now[2]), now[0], now[1])]), (seed, case)
    counted = decisioning.ctx.metrics.get_sample_value("edge_consent_stale_total")
    assert counted == stale_expected == decisioning.consent.stale
    assert stale_expected > 50  # the generator does produce late, older changes


@pytest.mark.anyio
async def test_redelivered_grant_does_not_undo_a_withdrawal(gateway: Gateway) -> None:
    """The reported case: grant g1, withdraw, re-send g1 unchanged: still withdrawn."""
    gw = gateway
    token = gw.component.identity.token("loyaltyId", "4242")
    g1 = consent_event("g1", token, T0_MS, True)
    w1 = consent_event("w1", token, T0_MS + 1000, False)
    for event, accepted in ((g1, 1), (w1, 1), (g1, 0)):
        result = await gw.publish(gw.source(transport="http"), [json.loads(json.dumps(event))])
        assert (result.accepted, result.duplicates) == (accepted, 1 - accepted)
    async with gw.client() as http:
        consent = (await http.get(f"/v1/consent/{token}", headers=gw.auth("ops"))).json()
    assert consent["categoryPreferences"]["cdp_sync"] is False
    assert consent["records"]["cdp_sync"]["messageId"] == "w1"
    # an older grant arriving late is stored, counted, and changes nothing
    late = await gw.publish(gw.source(), [consent_event("g0", token, T0_MS - 5000, True)])
    assert late.accepted == 1 and not gw.component.allows(token, "cdp_sync")
    assert gw.component.ctx.metrics.get_sample_value("edge_consent_stale_total") == 1
    # the same pair inside one group commit: the second copy is a duplicate, never re-applied
    again = await gw.publish(
        gw.source(),
        [
            consent_event("g2", token, T0_MS + 2000, True),
            consent_event("w2", token, T0_MS + 3000, False),
            consent_event("g2", token, T0_MS + 2000, True),
        ],
    )
    assert (again.accepted, again.duplicates) == (2, 1)
    assert not gw.component.allows(token, "cdp_sync")


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.anyio
async def test_downlink_consent_merges_by_the_same_rule(gateway: Gateway) -> None:
    """The CDP's consent changes go through the journal: redelivery and lateness as above."""
    import asyncio

    from sync.component import downlink_handlers
    from sync.messages import ConsentChange, encode_downlink, parse_downlink

    gw = gateway
    token = gw.component.identity.token("loyaltyId", "777")
    dec = gw.component
    handlers = downlink_handlers(dec.changes, dec.forgetting, dec.offers_path, None)
    assert handlers.record_consent is not None

    def apply(change: ConsentChange) -> str:  # what sync.downlink.Downlink.apply does with it
        message = parse_downlink(encode_downlink(change))
        assert message == change
        handlers.record_consent(message)  # type: ignore[misc]
        return "applied"

    withdraw = ConsentChange("d2", token, {"cdp_sync": False}, "cdp", iso(T0_MS + 2000))
    grant = ConsentChange("d1", token, {"cdp_sync": True}, "cdp", iso(T0_MS + 1000))
    assert await asyncio.to_thread(apply, withdraw) == "applied"
    assert await asyncio.to_thread(apply, grant) == "applied"  # older: stored, not in force
    assert await asyncio.to_thread(apply, withdraw) == "applied"  # redelivered: a duplicate
    assert not gw.component.allows(token, "cdp_sync")
    assert gw.rows("SELECT message_id FROM events WHERE user_id = ? ORDER BY seq", token) == [
        ("cdp-consent-d2",),
        ("cdp-consent-d1",),
    ]
    assert gw.component.consent.records(token)["cdp_sync"].message_id == "cdp-consent-d2"
    newer = ConsentChange("d3", token, {"cdp_sync": True}, "cdp", iso(T0_MS + 3000))
    assert await asyncio.to_thread(apply, newer) == "applied"
    assert gw.component.allows(token, "cdp_sync")


@pytest.mark.anyio
async def test_offline_drain_check_sends_withdrawals_but_nothing_of_the_erased(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``edge sync drain`` without the gateway: the outbox built on ``offline_policy``."""
    from edge.decisioning import policy

    gw = gateway
    kept = gw.component.identity.token("loyaltyId", "31")
    erased = gw.component.identity.token("loyaltyId", "32")
    for token in (kept, erased):
        await gw.publish(
            gw.source(),
            [
                consent_event(f"w-{token}", token, T0_MS, False),
                {"event": "Product Viewed", "userId": token, "properties": {"sku": "SKU00001"}},
            ],
        )
    records = gw.journal.read_after("offline", after=0)
    gw.component.erase(erased, "offline-1")
    config = gw.component.ctx.config
    monkeypatch.setattr(policy, "key_file", lambda config: gw.state_dir / "identity.key")
    check = policy.offline_policy(gw.journal, config)
    outbox = Outbox(
        gw.journal,
        SyncConfig(),
        lambda u: check.allows(u, "cdp_sync"),
        SyncMetrics(CollectorRegistry()),
        is_erased=check.is_suppressed,
    )
    outbound, _, skipped = outbox.select(records, set())
    assert [json.loads(e.body)["messageId"] for e in outbound] == [f"w-{kept}"]
    assert skipped["erased"] == 1 and skipped["no_consent"] == 2


@pytest.mark.anyio
async def test_a_future_dated_grant_cannot_outlast_the_next_withdrawal(gateway: Gateway) -> None:
    """Event time is capped at arrival: a device clock years ahead does not lock a choice in."""
    gw = gateway
    token = gw.component.identity.token("loyaltyId", "2100")
    arrival_ms = int(gw.clock() * 1000)
    await gw.publish(gw.source(), [consent_event("future", token, arrival_ms + 10 * 365 * 86_400_000, True)])
    assert gw.component.consent.records(token)["cdp_sync"].updated_ms == arrival_ms
    gw.clock.advance(1)
    await gw.publish(gw.source(), [consent_event("now", token, arrival_ms + 1000, False)])
    assert not gw.component.allows(token, "cdp_sync")
