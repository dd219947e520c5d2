from __future__ import annotations

import asyncio
import json

import pytest

from edge.errors import InvalidEvent

from .conftest import RAW_EMAIL, RAW_LOYALTY, RAW_NEEDLES, Gateway, running, scan_for, settle

CONSENT_ALL = {"personalization": True, "analytics": True, "cdp_sync": True}


async def _a_busy_customer(gw: Gateway) -> str:
    src, pos = gw.source(), gw.source("pos", "pos-1", "serial")
    token = gw.component.identity.token("email", RAW_EMAIL)
    async with gw.client() as http:
        reply = await http.post(
            "/v1/consent", headers=gw.auth("kiosk"), json={"identifiers": {"email": RAW_EMAIL}, "purposes": CONSENT_ALL}
        )
        assert reply.status_code == 200
    result = await gw.publish(
        src,
        [
            {"event": "Product Viewed", "properties": {"sku": "SKU00005", "identifiers": {"email": RAW_EMAIL}}},
            {"event": "Zone Entered", "userId": token, "properties": {"zoneId": "aisle-5"}},
        ],
    )
    assert result.accepted == 2
    decision = await gw.component.decide(src, {"userId": token, "basket": []})
    await gw.publish(
        pos,
        [
            {
                "event": "Order Completed",
                "properties": {
                    "identifiers": {"loyaltyId": RAW_LOYALTY},
                    "orderId": "o-1",
                    "products": [{"sku": "SKU00000", "quantity": 1, "price": 2.5}],
                },
            }
        ],
    )
    assert decision["decisionId"]
    await gw.drain()  # the exposure is journaled after the answer; its listeners fill the tables
    assert gw.component.profiles.get(token) is not None
    return token


@pytest.mark.anyio
async def test_erasure_leaves_no_trace_and_suppresses(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    gw = gateway
    gw.component.add_erasure_hook(lambda token: 1)  # e.g. presence state
    async with running(gw):
        token = await _a_busy_customer(gw)
        assert gw.rows("SELECT COUNT(*) FROM exposures WHERE user_id = ?", token)[0][0] > 0
        assert scan_for([gw.state_dir], [token]) != []  # the scan does see a token that is there
        async with gw.client() as http:
            assert (await http.delete(f"/v1/customers/{token}", headers=gw.auth("tablet"))).status_code == 403
            reply = await http.delete(f"/v1/customers/{token}?requestId=req-1", headers=gw.auth("ops"))
        assert reply.status_code == 200
        assert reply.json()["requestId"] == "req-1" and reply.json()["removed"] >= 5
        await settle(gw)
        confirmation = gw.rows("SELECT body, sync_allowed FROM events WHERE event = 'Customer Erased'")
        assert len(confirmation) == 1 and confirmation[0][1] == 1
        assert json.loads(confirmation[0][0])["properties"]["requestId"] == "req-1"
        assert gw.component.is_suppressed(token) and not gw.component.allows(token, "analytics")
        assert gw.component.profiles.get(token) is None
        # later events of that person are dropped and counted, by token or by raw identifier
        late = await gw.publish(
            gw.source(),
            [
                {"event": "Product Viewed", "userId": token, "properties": {"sku": "SKU00001"}},
                {"event": "Product Viewed", "properties": {"sku": "SKU00001", "identifiers": {"email": RAW_EMAIL}}},
            ],
        )
        assert late.accepted == 0 and [r.reason for r in late.rejected] == ["suppressed"] * 2
        counted = gw.component.ctx.metrics.get_sample_value(
            "edge_events_rejected_total", {"transport": "mqtt", "reason": "suppressed"}
        )
        assert counted == 2
        decision = await gw.component.decide(gw.source(), {"userId": token, "basket": []})
        assert not decision["personalized"]
        async with gw.client() as http:
            again = await http.post(
                "/v1/consent", headers=gw.auth("kiosk"), json={"userId": token, "purposes": {"analytics": True}}
            )
        assert again.status_code == 409
    gw.journal.checkpoint()
    for table in ("events", "consent", "profiles", "exposures", "redemptions"):
        assert gw.rows(f"SELECT COUNT(*) FROM {table} WHERE instr(quote({_cols(gw, table)}), ?) > 0", token) == [(0,)]
    files = sorted(gw.state_dir.iterdir())
    assert any(f.name.endswith("-wal") for f in files)
    assert scan_for([gw.state_dir], [token, token[3:], *RAW_NEEDLES]) == []
    # the gateway's own logs (the test's HTTP client logs the URLs it called, by design)
    gateway_logs = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert not [m for m in gateway_logs if token[3:] in m]


def _cols(gw: Gateway, table: str) -> str:
    names = [r[1] for r in gw.rows(f"PRAGMA table_info({table})")]
    return ") || quote(".join(names)


@pytest.mark.anyio
async def test_erase_by_cli_process_is_picked_up(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.decisioning import cli
    from edge.journal import Journal

    gw = gateway
    token = await _a_busy_customer(gw)
    other = Journal(gw.journal.path, synchronous="normal")
    monkeypatch.setattr(cli, "_config", lambda path: gw.component.ctx.config)
    monkeypatch.setattr(cli, "_journal", lambda config: other)
    monkeypatch.setattr(cli, "key_file", lambda config: gw.state_dir / "identity.key")
    monkeypatch.setattr(cli, "_socket", lambda config: gw.state_dir / "control.sock")
    parser = _parser()
    args = parser.parse_args(["forget", RAW_EMAIL, "--request-id", "cli-1"])
    assert args.func(args) == 0
    assert token in capsys.readouterr().out
    async with running(gw):
        await settle(gw)
        assert gw.component.is_suppressed(token)
        assert gw.component.consent.snapshot(token)["personalization"] is False
        assert gw.rows("SELECT COUNT(*) FROM events WHERE event = 'Customer Erased'") == [(1,)]
    args = parser.parse_args(["forget", "12345"])
    assert args.func(args) == 2  # a bare number is ambiguous without --kind


def _parser():  # type: ignore[no-untyped-def]
    import argparse

    from edge.decisioning.cli import add_commands

    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.anyio
async def test_nothing_about_an_erased_person_is_stored_whatever_the_path(gateway: Gateway) -> None:
    """The check is inside the journal commit: every transport, the downlink, a direct commit."""
    from edge.events import parse_event

    gw = gateway
    async with running(gw):
        token = await _a_busy_customer(gw)
        visit = "visit-of-the-erased"
        await gw.publish(gw.source(), [{"event": "Customer Identified", "userId": token, "anonymousId": visit}])
        gw.component.erase(token, "req-paths")
        for transport in ("http", "mqtt", "serial", "ble", "camera", "local"):
            result = await gw.publish(
                gw.source(transport=transport),
                [
                    {"event": "Product Viewed", "userId": token, "properties": {"sku": "SKU00001"}},
                    {"event": "Product Viewed", "anonymousId": visit, "properties": {"sku": "SKU00001"}},
                ],
            )
            assert result.accepted == 0 and {r.reason for r in result.rejected} == {"suppressed"}, transport
        with pytest.raises(InvalidEvent, match="suppressed"):
            await asyncio.to_thread(gw.component.apply_consent, token, {"cdp_sync": True}, "cdp")
        # a component that commits on its own, past every ingest stage, is refused as well
        late = parse_event(
            {"event": "Zone Entered", "userId": token, "properties": {"zoneId": "z"}},
            gw.source(transport="ble"),
            1_767_600_000_000,
        )
        outcome = gw.journal.commit([late])
        assert outcome.inserted == (False,) and outcome.refused == ("suppressed",) and outcome.duplicates == 0
        letters = gw.rows("SELECT source, detail, sha256, excerpt, size FROM dead_letters WHERE reason = 'suppressed'")
        assert letters and all(r[:4] == ("", "", "", "") and r[4] > 0 for r in letters)
        assert gw.rows("SELECT COUNT(*) FROM events WHERE user_id = ? OR anonymous_id = ?", token, visit) == [(0,)]
        export = gw.component.export(token)
        assert export["suppressed"] is True and not any(export["tables"].values())
