"""The kiosk page in real headless Chromium: sign-in, consent with its receipt, browsing that
journals Product Viewed, a personalized offer with reasons; anonymous mode; idle reset."""

from __future__ import annotations

import json

import pytest
from pagekit import axe_violations, screenshot, wait_for
from support.privacy import RAW_EMAIL

pytestmark = pytest.mark.integration


def _journal(handle, sql: str, *args):
    return handle.gateway.context.journal.reader().execute(sql, args).fetchall()


def test_sign_in_consent_and_a_personalized_offer(store, browser):
    handle, creds = store
    tab = browser.open(handle, "kiosk", creds["kiosk-1"])
    wait_for(lambda: tab.get_attribute("#conn", "data-state") == "online")
    assert axe_violations(tab) == []
    screenshot(tab, "kiosk-sign-in")
    tab.get_by_label("E-mail").check()
    tab.get_by_label("E-mail address").fill(RAW_EMAIL)
    tab.get_by_role("button", name="Continue").click()
    tab.get_by_label("Pick offers for me").check()
    tab.get_by_label("Share with head office").check()
    assert axe_violations(tab) == []
    screenshot(tab, "kiosk-consent")
    tab.get_by_role("button", name="Save my choices").click()
    tab.wait_for_selector("#receipt:not([hidden])")
    receipt_id = tab.inner_text("#receipt-id")
    assert "Pick offers for me: yes" in tab.inner_text("#receipt")
    assert "Count my visits: no" in tab.inner_text("#receipt")

    # the receipt is the journaled Consent Updated event, with the notice version the page showed
    (body,) = _journal(handle, "SELECT body FROM events WHERE message_id = ?", receipt_id)[0]
    consent = json.loads(body)
    user_id = consent["userId"]
    assert user_id.startswith("ct_") and RAW_EMAIL.lower() not in body.lower()
    assert consent["properties"]["noticeVersion"] == "kiosk-2026-12"
    assert consent["properties"]["categoryPreferences"] == {
        "personalization": True,
        "analytics": False,
        "cdp_sync": True,
    }

    # the first decision after consent: personalized, ranked offers, each with its reasons
    decision_id = wait_for(lambda: tab.get_attribute("#offers", "data-decision-id"))
    assert tab.get_attribute("#offers", "data-personalized") == "true"
    assert tab.locator("#offers .offer").count() >= 1
    assert tab.locator("#offers .offer").first.locator(".reasons li").count() >= 1
    tab.locator("#products .card button").first.click()
    wait_for(lambda: _journal(handle, "SELECT COUNT(*) FROM events WHERE event = 'Product Viewed' AND user_id = ?",
                              user_id)[0][0] == 1)  # fmt: skip
    wait_for(lambda: tab.get_attribute("#offers", "data-latest-decision-id") != decision_id)
    wait_for(lambda: _journal(handle, "SELECT COUNT(*) FROM events WHERE event = 'Offer Viewed' AND user_id = ?"
                              " AND json_extract(body, '$.properties.decisionId') = ?", user_id, decision_id)[0][0] >= 1)  # fmt: skip
    assert axe_violations(tab) == []
    screenshot(tab, "kiosk-offers")
    # nothing the page keeps in the browser holds the raw e-mail
    stored = tab.evaluate("() => JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert "quuxington" not in stored.lower()
    assert browser.foreign_requests(handle) == []
    tab.close()


def test_anonymous_mode_works_without_consent(store, browser):
    handle, creds = store
    tab = browser.open(handle, "kiosk", creds["kiosk-1"])
    tab.get_by_role("button", name="Browse without signing in").click()
    wait_for(lambda: tab.get_attribute("#offers", "data-decision-id"))
    assert tab.get_attribute("#offers", "data-personalized") == "false"
    assert tab.get_attribute("#who", "data-mode") == "anonymous"
    sku = tab.locator("#products .card").first.get_attribute("data-sku")
    tab.locator("#products .card button").first.click()
    rows = wait_for(lambda: _journal(handle, "SELECT user_id, anonymous_id FROM events WHERE event = 'Product Viewed'"
                                     " AND json_extract(body, '$.properties.sku') = ? AND user_id IS NULL", sku))  # fmt: skip
    assert rows[0][1]  # a visit id, nobody's token
    tab.close()


def test_idle_reset_forgets_the_person(store, browser):
    handle, creds = store
    tab = browser.open(handle, "kiosk", creds["kiosk-1"], "?idleSeconds=2")
    tab.get_by_role("radio", name="Loyalty card (QR)").check()
    tab.get_by_label("Loyalty card number").fill("55501234")
    tab.get_by_role("button", name="Continue").click()
    tab.get_by_label("Pick offers for me").check()
    tab.get_by_role("button", name="Save my choices").click()
    tab.wait_for_selector("#receipt:not([hidden])")
    assert tab.get_attribute("#who", "data-mode") == "person"
    tab.wait_for_selector("#signin:not([hidden])", timeout=10_000)  # no touch for 2 s
    assert tab.get_attribute("#who", "data-mode") == "none"
    assert tab.is_hidden("#shop") and tab.inner_text("#receipt") == "" and tab.inner_text("#offers") == ""
    tab.close()
