"""The ops dashboard in real headless Chromium against a running gateway: live rates, an uplift
chart drawn from real decisions and orders, axe-core, and no request to any other host."""

from __future__ import annotations

import httpx
import pytest
from pagekit import axe_violations, screenshot, wait_for

pytestmark = pytest.mark.integration


def _traffic(handle, creds, customers: int = 40) -> None:
    """Decisions for identified customers at the kiosk, then orders at the till (some redeem)."""
    kiosk = {"Authorization": f"Bearer {creds['kiosk-1'].http_token}"}
    pos = {"Authorization": f"Bearer {creds['pos-1'].http_token}"}
    with httpx.Client(base_url=handle.http, verify=False, timeout=30) as http:
        for i in range(customers):
            loyalty = {"loyaltyId": f"9000{i:04d}"}
            answer = http.post("/v1/decisions", json={"identifiers": loyalty, "basket": [], "placement": "kiosk"},
                               headers=kiosk)  # fmt: skip
            assert answer.status_code == 200, answer.text
            offers = answer.json()["offers"]
            sku = offers[0]["sku"] if offers and offers[0].get("sku") and i % 2 == 0 else "SKU00049"
            order = {"event": "Order Completed", "properties": {"identifiers": loyalty, "orderId": f"o-{i}",
                     "products": [{"sku": sku, "quantity": 1, "price": 2.5}]}}  # fmt: skip
            sent = http.post("/v1/events", json={"batch": [order]}, headers=pos)
            assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text


def test_dashboard_shows_live_rates_and_an_uplift_chart(store, browser):
    handle, creds = store
    tab = browser.open(handle, "ops", creds["ops-1"], "?pollMs=1000")
    wait_for(lambda: tab.get_attribute("#conn", "data-state") == "online")
    _traffic(handle, creds)
    # a rate is a counter's change between two of the dashboard's own samples: non-zero after the traffic
    wait_for(lambda: float(tab.inner_text("#kpi-ingest .v").replace("—", "0") or 0) > 0, timeout=20)
    wait_for(lambda: float(tab.inner_text("#kpi-decisions .v").replace("—", "0") or 0) > 0, timeout=20)
    assert tab.locator("#rates-chart svg polyline").count() == 2
    # one bar per campaign with exposures, drawn as SVG by the page from GET /v1/reports/uplift
    wait_for(lambda: tab.locator("#uplift-chart svg rect.bar").count() > 0, timeout=20)
    report = httpx.get(f"{handle.http}/v1/reports/uplift", verify=False,
                       headers={"Authorization": f"Bearer {creds['ops-1'].http_token}"}).json()  # fmt: skip
    assert report["campaigns"]
    experiments = {c["experiment"] for c in report["campaigns"]}
    labels = lambda: tab.locator("#uplift-chart svg text").all_text_contents()  # noqa: E731
    wait_for(lambda: all(any(t.startswith(e) for t in labels()) for e in experiments), timeout=10)
    assert "kiosk-1" in tab.inner_text("#devices") and "pos-1" in tab.inner_text("#devices")
    assert "20260403" in tab.inner_text("#versions")  # the shipped model's version
    assert "demo-2026-01" in tab.inner_text("#versions")  # the offer catalog's
    assert "expires in" in tab.inner_text("#versions")
    assert axe_violations(tab) == []
    screenshot(tab, "ops")
    assert browser.foreign_requests(handle) == []


def test_dashboard_refuses_other_roles_and_says_so(store):
    handle, creds = store
    answer = httpx.get(f"{handle.http}/v1/ops/overview", verify=False,
                       headers={"Authorization": f"Bearer {creds['kiosk-1'].http_token}"})  # fmt: skip
    assert answer.status_code == 403 and "kiosk" in answer.json()["detail"]
    assert httpx.get(f"{handle.http}/v1/ops/overview", verify=False).status_code == 401


def test_dashboard_counts_consent_and_erasures_from_decisioning(store):
    handle, creds = store
    kiosk = {"Authorization": f"Bearer {creds['kiosk-1'].http_token}"}
    ops = {"Authorization": f"Bearer {creds['ops-1'].http_token}"}
    with httpx.Client(base_url=handle.http, verify=False, timeout=30) as http:
        before = http.get("/v1/ops/overview", headers=ops).json()
        granted = http.post("/v1/consent", headers=kiosk, json={
            "identifiers": {"loyaltyId": "77000001"}, "purposes": {"personalization": True, "analytics": False}})  # fmt: skip
        assert granted.status_code == 200, granted.text
        gone = http.delete(f"/v1/customers/{granted.json()['userId']}", headers=ops)
        assert gone.status_code in (200, 202), gone.text
        after = http.get("/v1/ops/overview", headers=ops).json()
    counts = lambda view, purpose, key: (view["consent"] or {}).get(purpose, {}).get(key, 0)  # noqa: E731
    assert after["erasures"] == before["erasures"] + 1
    # the erased person's consent rows went with them: the counts are back to where they were
    assert counts(after, "personalization", "granted") == counts(before, "personalization", "granted")
