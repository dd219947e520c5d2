"""Right of access: ``GET /v1/customers/{userId}/export`` and ``edge export`` return exactly the
rows a scan of every table of the state — every column of every row, whatever the table —
finds about the person: their token, the visit they identified in, or the keyed digests a dead
letter keeps. Another customer's rows stay out, unless they mention the person.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.ble.rotating import AppKeyStore
from edge import schema
from edge.journal import Journal

from .conftest import RAW_EMAIL, RAW_PHONE, Gateway, make_gateway, running

EDGE = Path(sys.executable).with_name("edge")
CONSENT_ALL = {"personalization": True, "analytics": True, "cdp_sync": True}


async def _customer(gw: Gateway, identifiers: dict[str, str], visit: str, tag: str) -> str:
    src, pos = gw.source(), gw.source("pos", "pos-1", "serial")
    await gw.publish(
        src,
        [
            {
                "event": "Product Viewed",
                "anonymousId": visit,
                "properties": {"sku": "SKU00002", "note": f"{tag}-before-sign-in"},
            }
        ],
    )
    await gw.publish(
        src,
        [
            {
                "event": "Consent Updated",
                "anonymousId": visit,
                "properties": {"categoryPreferences": CONSENT_ALL, "identifiers": dict(identifiers)},
            }
        ],
    )
    await gw.publish(src, [{"type": "identify", "anonymousId": visit, "traits": dict(identifiers)}])
    token = gw.component.identity.resolve(identifiers)
    await gw.publish(src, [{"event": "Product Added", "userId": token, "properties": {"sku": "SKU00005"}}])
    decision = await gw.component.decide(src, {"userId": token, "anonymousId": visit, "basket": []})
    await gw.drain()
    sku = next((o["sku"] for o in decision["offers"] if o.get("sku")), "SKU00000")
    await gw.publish(
        pos,
        [
            {
                "event": "Order Completed",
                "userId": token,
                "anonymousId": visit,
                "properties": {"orderId": f"o-{tag}", "products": [{"sku": sku, "quantity": 1, "price": 3}]},
            }
        ],
    )
    await gw.publish(src, [{"event": "Bogus Event", "userId": token, "properties": {"note": tag}}])
    AppKeyStore(gw.journal).register(token, bytes([len(tag)]) * 32)
    await gw.drain()
    return token


def _scan_state(journal: Journal, needles: list[str]) -> set[tuple[str, int]]:
    """(table, rowid) of every row of every table with a needle in any column."""
    hits = set()
    with journal.connection() as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        ]
        for table in tables:
            for row in conn.execute(f"SELECT rowid, * FROM {table}"):
                text = " ".join(v.hex() + " " + v.decode("latin-1") if isinstance(v, bytes) else str(v)
                                for v in row[1:])  # fmt: skip
                if any(n in text for n in needles):
                    hits.add((table, int(row[0])))
    return hits


@pytest.mark.anyio
async def test_export_is_exactly_what_a_scan_of_the_state_finds(tmp_path: Path) -> None:
    Journal(tmp_path / "state" / "journal.db", migrations=schema.migrations()).close()
    gw = make_gateway(tmp_path)
    try:
        async with running(gw):
            token = await _customer(gw, {"email": RAW_EMAIL}, "visit-export-1", "zelda")
            other = await _customer(gw, {"phone": RAW_PHONE}, "visit-export-2", "ovid")
            # another customer's event that mentions the person (a referral): it is about them too
            await gw.publish(
                gw.source(),
                [{"event": "Product Viewed", "userId": other, "properties": {"sku": "SKU00009", "referredBy": token}}],
            )
            await gw.drain()
            digests = [gw.component.eraser.digest(s) for s in (token, "visit-export-1")]
            found = _scan_state(gw.journal, [token, "visit-export-1", *digests])
            async with gw.client() as http:
                assert (await http.get(f"/v1/customers/{token}/export", headers=gw.auth("tablet"))).status_code == 403
                reply = await http.get(f"/v1/customers/{token}/export", headers=gw.auth("ops"))
                assert reply.status_code == 200, reply.text
                bad = await http.get(f"/v1/customers/{RAW_EMAIL}/export", headers=gw.auth("ops"))
                assert bad.status_code == 422 and bad.json()["error"] == "bad_identifier"
        document = reply.json()
        exported = {(table, row["_rowid"]) for table, rows in document["tables"].items() for row in rows}
        assert exported == found
        tables = {t for t, _ in found}
        assert {
            "events",
            "consent",
            "profiles",
            "exposures",
            "redemptions",
            "devices_app_keys",
            "dead_letters",
        } <= tables, tables  # every kind of personal row was there to find
        assert document["visits"] == ["visit-export-1"] and document["suppressed"] is False
        events = [row["body"] for row in document["tables"]["events"]]
        assert any(e.get("properties", {}).get("referredBy") == token for e in events)
        assert not [e for e in events if e.get("userId") == other and "referredBy" not in e.get("properties", {})]
        assert {r["purpose"] for r in document["tables"]["consent"]} == set(CONSENT_ALL)
        profile = document["tables"]["profiles"][0]
        assert profile["user_id"] == token and isinstance(profile["purchases"], list)
    finally:
        gw.ingestor.stop()
        gw.journal.close()
    # the CLI, with no gateway running, reads the same from the file
    toml = tmp_path / "gateway.toml"
    toml.write_text(f'[store]\nid = "s1"\nstate_dir = "{tmp_path / "state"}"\n')
    done = subprocess.run([str(EDGE), "export", token, "--config", str(toml)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    from_cli: dict[str, Any] = json.loads(done.stdout)
    assert {**from_cli, "exportedAt": None} == {**document, "exportedAt": None}
