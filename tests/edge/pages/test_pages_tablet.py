"""The associate tablet in real headless Chromium: an opted-in customer entering the associate's
zone is listed with a profile summary and next-best actions; one without consent is not; accept
feedback reaches the journal; a trigger notification pushed to the tablet's topic is shown."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from pagekit import axe_violations, push_offer, screenshot, wait_for
from test_pages_display import pushed

pytestmark = pytest.mark.integration

OPTED_IN = {"loyaltyId": "77001234"}
NO_CONSENT = {"loyaltyId": "77005678"}


def _events(handle, creds, events) -> None:
    answer = httpx.post(f"{handle.http}/v1/events", json={"batch": events}, verify=False,
                        headers={"Authorization": f"Bearer {creds['kiosk-1'].http_token}"})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["accepted"] == len(events), answer.text


def test_tablet_lists_opted_in_customers_in_its_zone_only(store, browser):
    handle, creds = store
    kiosk = {"Authorization": f"Bearer {creds['kiosk-1'].http_token}"}
    with httpx.Client(base_url=handle.http, verify=False, headers=kiosk) as http:
        yes = http.post("/v1/consent", json={"identifiers": OPTED_IN, "purposes": {"personalization": True}}).json()
        no = http.post("/v1/consent", json={"identifiers": NO_CONSENT, "purposes": {"analytics": True}}).json()
    _events(handle, creds, [{"event": "Product Viewed", "properties": {"identifiers": OPTED_IN, "sku": "SKU00001"}}])

    tab = browser.open(handle, "tablet", creds["tablet-1"])
    tab.get_by_label("My zones").fill("deli")
    tab.get_by_role("button", name="Save zones").click()
    wait_for(lambda: tab.get_attribute("#conn", "data-state") == "online")
    _events(handle, creds, [
        {"event": "Zone Entered", "properties": {"identifiers": NO_CONSENT, "zoneId": "deli"}},
        {"event": "Zone Entered", "properties": {"identifiers": OPTED_IN, "zoneId": "bakery"}},  # not my zone
    ])  # fmt: skip
    time.sleep(1.0)
    assert tab.locator("#nearby .customer").count() == 0
    _events(handle, creds, [{"event": "Zone Entered", "properties": {"identifiers": OPTED_IN, "zoneId": "deli"}}])
    card = tab.locator(f'#nearby .customer[data-user-id="{yes["userId"]}"]')
    card.wait_for(timeout=10_000)
    assert tab.locator("#nearby .customer").count() == 1
    assert no["userId"] not in tab.content()  # nothing about the person without consent, not even the token
    assert "1 visit" in card.inner_text() and "dairy" in card.inner_text()  # the consented profile summary
    suggestion = card.locator("li[data-offer-id]").first
    suggestion.wait_for(timeout=10_000)
    offer_id = suggestion.get_attribute("data-offer-id")
    suggestion.get_by_role("button", name="Accept").click()
    clicked = wait_for(lambda: handle.gateway.context.journal.reader().execute(
        "SELECT body FROM events WHERE event = 'Offer Clicked' AND user_id = ? AND"
        " json_extract(body, '$.properties.offerId') = ?", (yes["userId"], offer_id)).fetchall())  # fmt: skip
    assert json.loads(clicked[0][0])["properties"]["response"] == "accepted"
    assert json.loads(clicked[0][0])["deviceId"] == "tablet-1"

    # a trigger firing notifies the tablet (non-retained, on its own topic)
    wait_for(lambda: tab.get_attribute("#alerts", "data-link") == "online")
    note = pushed(("deli-lunch-15", "15 % off deli lunch")) | {
        "profile": {"userId": yes["userId"]},
        "why": ["dwelled 4 min in deli"],
    }
    deadline = time.monotonic() + 10
    while tab.locator(f'#alerts [data-decision-id="{note["decisionId"]}"]').count() == 0:
        assert time.monotonic() < deadline, "the trigger notification never showed"
        push_offer(handle, "tablet", "tablet-1", note, retain=False)  # until subscribed, a push is missed
        time.sleep(0.5)
    assert "dwelled 4 min in deli" in tab.inner_text("#alerts")
    assert axe_violations(tab) == []
    screenshot(tab, "tablet")

    # withdrawing consent: the customer's profile is gone, a new entry does not list them
    with httpx.Client(base_url=handle.http, verify=False, headers=kiosk) as http:
        http.post("/v1/consent", json={"identifiers": OPTED_IN, "purposes": {"personalization": False}})
    tab.reload()
    wait_for(lambda: tab.get_attribute("#conn", "data-state") == "online")
    _events(handle, creds, [{"event": "Zone Entered", "properties": {"identifiers": OPTED_IN, "zoneId": "deli"}}])
    time.sleep(1.0)
    assert tab.locator("#nearby .customer").count() == 0
    assert browser.foreign_requests(handle) == []
    tab.close()
