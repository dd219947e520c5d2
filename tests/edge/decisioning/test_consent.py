from __future__ import annotations

import json

import pytest

from .conftest import RAW_EMAIL, RAW_NEEDLES, RAW_PHONE, Gateway, scan_for


def _sync_flags(gw: Gateway, user_id: str) -> list[tuple[str, int]]:
    return [
        (r[0], r[1]) for r in gw.rows("SELECT event, sync_allowed FROM events WHERE user_id = ? ORDER BY seq", user_id)
    ]


@pytest.mark.anyio
async def test_consent_api_receipt_and_snapshot(gateway: Gateway) -> None:
    async with gateway.client() as http:
        reply = await http.post(
            "/v1/consent",
            headers=gateway.auth("kiosk"),
            json={
                "identifiers": {"email": RAW_EMAIL},
                "purposes": {"personalization": True, "cdp_sync": True},
                "noticeVersion": "2026-01",
            },
        )
        assert reply.status_code == 200, reply.text
        receipt = reply.json()
        token = gateway.component.identity.token("email", RAW_EMAIL)
        assert receipt["userId"] == token
        assert receipt["categoryPreferences"] == {"personalization": True, "analytics": False, "cdp_sync": True}
        assert receipt["records"]["personalization"]["source"] == "kiosk"
        assert receipt["records"]["cdp_sync"]["noticeVersion"] == "2026-01"
        read = await http.get(f"/v1/consent/{token}", headers=gateway.auth("tablet"))
        assert read.json()["categoryPreferences"] == receipt["categoryPreferences"]
        assert (await http.get(f"/v1/consent/{token}", headers=gateway.auth("display"))).status_code == 403
        assert (await http.post("/v1/consent", json={})).status_code == 401
        bad = await http.post(
            "/v1/consent",
            headers=gateway.auth("kiosk"),
            json={"identifiers": {"phone": RAW_PHONE}, "purposes": {"marketing": True}},
        )
        assert bad.status_code == 422 and bad.json()["error"] == "bad_consent"
    body = json.loads(gateway.journal.get(receipt["receiptId"]) or "{}")
    assert body["event"] == "Consent Updated"
    assert body["context"]["consent"]["categoryPreferences"]["cdp_sync"] is True  # applied first
    assert _sync_flags(gateway, token) == [("Consent Updated", 1)]
    gateway.journal.checkpoint()
    assert scan_for([gateway.state_dir], RAW_NEEDLES) == []


@pytest.mark.anyio
async def test_default_deny_and_withdrawal_reaches_next_sync_and_decision(gateway: Gateway) -> None:
    gw, src = gateway, gateway.source()
    token = gw.component.identity.token("email", RAW_EMAIL)

    def ident() -> dict:
        return {"identifiers": {"email": RAW_EMAIL}}  # the stage clears the dict it was given

    async def send(event: dict) -> None:
        result = await gw.publish(src, [event])
        assert result.accepted == 1, result.rejected

    await send({"event": "Product Viewed", "properties": {"sku": "SKU00007", **ident()}})
    assert not gw.component.allows(token, "cdp_sync")
    await send(
        {
            "event": "Consent Updated",
            "userId": token,
            "properties": {"categoryPreferences": {"cdp_sync": True, "personalization": True}},
        }
    )
    await send({"event": "Product Viewed", "properties": {"sku": "SKU00008", **ident()}})
    assert gw.component.allows(token, "cdp_sync") and gw.component.allows(token, "personalization")
    decision = await gw.component.decide(src, {"userId": token, "basket": []})
    assert decision["personalized"] and gw.recommender.calls[-1]["history"]
    # withdrawal over MQTT from the app: the next event and the next decision obey it
    await send(
        {
            "event": "Consent Updated",
            "userId": token,
            "properties": {
                "categoryPreferences": {"cdp_sync": False, "personalization": False},
                "consentSource": "app",
                "noticeVersion": "v2",
            },
        }
    )
    await send({"event": "Product Added", "properties": {"sku": "SKU00009", **ident()}})
    decision = await gw.component.decide(src, {"userId": token, "basket": []})
    assert not decision["personalized"] and gw.recommender.calls[-1]["history"] == []
    assert gw.component.profiles.get(token) is None
    assert gw.rows("SELECT COUNT(*) FROM profiles WHERE user_id = ?", token) == [(0,)]
    flags = _sync_flags(gw, token)
    assert flags[:3] == [("Product Viewed", 0), ("Consent Updated", 1), ("Product Viewed", 1)]
    assert ("Consent Updated", 0) in flags and ("Product Added", 0) in flags
    record = gw.component.consent.records(token)["personalization"]
    assert (record.source, record.notice_version, record.granted) == ("app", "v2", False)


@pytest.mark.anyio
async def test_personless_events_sync_and_anonymous_visits_do_not(gateway: Gateway) -> None:
    result = await gateway.publish(
        gateway.source("display", "display-1"),
        [
            {"event": "Audience Measured", "properties": {"count": 3}},
            {"event": "Product Viewed", "anonymousId": "visit-1", "properties": {"sku": "SKU00001"}},
        ],
    )
    assert result.accepted == 2
    rows = gateway.rows("SELECT event, sync_allowed FROM events ORDER BY seq")
    assert rows == [("Audience Measured", 1), ("Product Viewed", 0)]


@pytest.mark.anyio
async def test_device_cannot_forge_its_consent_snapshot(gateway: Gateway) -> None:
    token = gateway.component.identity.token("email", RAW_EMAIL)
    result = await gateway.publish(
        gateway.source(),
        [
            {
                "event": "Product Viewed",
                "userId": token,
                "properties": {"sku": "SKU00001"},
                "context": {"consent": {"categoryPreferences": {"cdp_sync": True}}},
            }
        ],
    )
    assert result.accepted == 1
    assert gateway.rows("SELECT sync_allowed FROM events") == [(0,)]


@pytest.mark.anyio
async def test_consent_row_commits_with_its_event_and_reloads(gateway: Gateway) -> None:
    from edge.decisioning.consent import ConsentLedger

    token = gateway.component.identity.token("appId", "dave-app")
    result = await gateway.publish(
        gateway.source("tablet", "tablet-1"),
        [
            {
                "event": "Consent Updated",
                "userId": token,
                "timestamp": "2026-01-05T07:59:00Z",
                "properties": {"categoryPreferences": {"analytics": True}, "noticeVersion": "n7"},
            }
        ],
    )
    # no listener in between: the row was written by the commit that stored the event
    rows = gateway.rows(
        "SELECT purpose, granted, source, notice_version, updated_ms, message_id FROM consent WHERE user_id = ?", token
    )
    assert rows == [("analytics", 1, "associate", "n7", 1_767_599_940_000, result.message_ids[0])]
    ledger = ConsentLedger(gateway.journal)
    assert ledger.allows(token, "analytics") and not ledger.allows(token, "cdp_sync")
    assert ledger.records(token) == gateway.component.consent.records(token)
