"""Pairing in real headless Chromium: a new device's page shows a code; approved with
`edge devices pair CODE --kind …` (or from the ops dashboard) it receives its own credentials
and opens its page, which then works with them (a display subscribing over /mqtt)."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from pagekit import axe_violations, push_offer, screenshot, wait_for
from test_pages_display import pushed

from edge import schema
from edge.cli import main

pytestmark = pytest.mark.integration


def _toml(config) -> str:
    lines = []
    for section in schema.config_schema():
        values = dataclasses.asdict(config.section(section))
        lines.append(f"[{section}]")
        lines += [
            f"{k} = {json.dumps(str(v) if hasattr(v, 'parts') else v)}" for k, v in values.items() if v is not None
        ]
    return "\n".join(lines) + "\n"


def _fresh_tab(browser, handle, page: str):
    browser.requests.clear()
    tab = browser.context.new_page()
    tab.on("request", lambda r: browser.requests.append(r.url))
    tab.on("websocket", lambda ws: browser.requests.append(ws.url))
    tab.goto(f"{handle.http}/pages/{page}")
    tab.evaluate("() => { localStorage.clear(); sessionStorage.clear(); }")  # a device never paired
    tab.reload()
    return tab


def test_a_display_pairs_with_the_cli_and_then_plays_its_offers(store, browser, tmp_path, capsys):
    handle, creds = store
    path = tmp_path / "gateway.toml"
    path.write_text(_toml(handle.config))
    tab = _fresh_tab(browser, handle, "pair?for=display")
    code = wait_for(lambda: tab.inner_text("#code").strip())
    assert len(code) == 6 and f"edge devices pair {code} --kind display" in tab.inner_text("#command")
    assert axe_violations(tab) == []
    screenshot(tab, "pair")
    assert main(["devices", "pair", code, "--kind", "display", "--id", "display-paired", "--config", str(path)]) == 0
    assert "approved" in capsys.readouterr().out
    tab.wait_for_url("**/pages/display", timeout=15_000)
    stored = json.loads(tab.evaluate("() => localStorage.getItem('edge.device')"))
    assert stored["deviceId"] == "display-paired" and stored["kind"] == "display" and stored["token"].startswith("edt_")
    # the credentials are the device's own: its token is accepted, and it may subscribe to its own offers
    assert httpx.post(f"{handle.http}/v1/events", verify=False, headers={"Authorization": f"Bearer {stored['token']}"},
                      json={"event": "Device Status", "properties": {"status": "online"}}).status_code == 200  # fmt: skip
    offer = pushed(("bev-cola-2for1", "Two for one on our best-selling drink"))
    push_offer(handle, "display", "display-paired", offer)
    wait_for(lambda: tab.get_attribute("#slot", "data-decision-id") == offer["decisionId"])
    # the code was handed over once: asking again with it finds nothing
    assert httpx.get(f"{handle.http}/v1/pairing/{code}", verify=False).status_code == 404
    assert main(["devices", "pair", code, "--kind", "display", "--config", str(path)]) == 2
    assert "no pairing" in capsys.readouterr().err
    assert browser.foreign_requests(handle) == []
    tab.close()


def test_an_operator_approves_a_kiosk_from_the_dashboard(store, browser):
    handle, creds = store
    device = _fresh_tab(browser, handle, "pair?for=kiosk")
    code = wait_for(lambda: device.inner_text("#code").strip())
    ops = browser.context.new_page()
    ops.add_init_script(
        "localStorage.setItem('edge.device', "
        + json.dumps(
            json.dumps(
                {
                    "deviceId": "ops-1",
                    "kind": "ops",
                    "storeId": handle.config.store.id,
                    "token": creds["ops-1"].http_token,
                }
            )
        )
        + ")"
    )
    ops.goto(f"{handle.http}/pages/ops?pollMs=1000")
    ops.get_by_role("button", name=f"Approve {code}").click()
    device.wait_for_url("**/pages/kiosk", timeout=15_000)
    device.get_by_role("button", name="Browse without signing in").click()
    wait_for(lambda: device.get_attribute("#offers", "data-decision-id"))  # the kiosk works with its own token
    assert (
        json.loads(device.evaluate("() => localStorage.getItem('edge.device')"))["deviceId"] == f"kiosk-{code.lower()}"
    )
    assert browser.foreign_requests(handle) == []
    ops.close()
    device.close()


def test_pairing_refuses_a_wrong_claim_and_bad_codes(store):
    handle, creds = store
    with httpx.Client(base_url=handle.http, verify=False) as http:
        asked = http.post("/v1/pairing", json={"kind": "tablet"}).json()
        assert http.get(f"/v1/pairing/{asked['code']}", headers={"X-Pairing-Claim": "guess"}).status_code == 404
        assert http.get(f"/v1/pairing/{asked['code']}", headers={"X-Pairing-Claim": asked["claim"]}).json() == {
            "state": "pending", "expiresAt": asked["expiresAt"]}  # fmt: skip
        ops = {"Authorization": f"Bearer {creds['ops-1'].http_token}"}
        kiosk = {"Authorization": f"Bearer {creds['kiosk-1'].http_token}"}
        assert (
            http.post(f"/v1/pairing/{asked['code']}/approve", json={"kind": "tablet"}, headers=kiosk).status_code == 403
        )
        bad = http.post("/v1/pairing/NOPE!!/approve", json={"kind": "tablet"}, headers=ops)
        assert bad.status_code == 404 and "6 letters" in bad.json()["detail"]
        assert http.post("/v1/pairing", json={"kind": "toaster"}).status_code == 422
        assert http.delete(f"/v1/pairing/{asked['code']}", headers=ops).json()["state"] == "declined"
        assert http.get(f"/v1/pairing/{asked['code']}", headers={"X-Pairing-Claim": asked["claim"]}).status_code == 404
