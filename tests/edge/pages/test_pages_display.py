"""The display page in real headless Chromium: it shows the offer pushed (retained) to its topic
over MQTT on secure WebSockets, reports the impression (Offer Viewed with the decisionId and
arm in the journal), swaps at a loop boundary, and survives a gateway restart."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pagekit import FEATURES, axe_violations, device_storage, pages_config, push_offer, screenshot, wait_for
from support.gateway import register, running_gateway

from edge.broker import free_port
from edge.ids import uuid7

pytestmark = pytest.mark.integration


def pushed(*offers: tuple[str, str], arm: str = "treatment") -> dict:
    """The agreed pushed-offer payload (offers as in a POST /v1/decisions answer)."""
    now = datetime.now(UTC)
    return {"decisionId": uuid7(), "arm": arm, "trigger": {"id": "deli-dwell", "version": 3},
            "offers": [{"offerId": o, "sku": "SKU02052", "title": t, "score": 1.2, "reasons": ["trigger deli-dwell"]}
                       for o, t in offers],
            "issuedAt": now.isoformat().replace("+00:00", "Z"),
            "validUntil": (now + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")}  # fmt: skip


def _viewed(handle, decision_id: str) -> list[dict]:
    rows = (
        handle.gateway.context.journal.reader()
        .execute(
            "SELECT body FROM events WHERE event = 'Offer Viewed' AND json_extract(body, '$.properties.decisionId') = ?",
            (decision_id,),
        )
        .fetchall()
    )
    return [json.loads(b) for (b,) in rows]


def _shown(tab) -> tuple[str, str]:
    """(decisionId, offerId) on screen, read in one evaluation: two reads could straddle a swap."""
    return tuple(tab.locator("#slot").evaluate("e => [e.dataset.decisionId, e.dataset.offerId]"))


def test_display_shows_the_pushed_offer_and_reports_its_impression(store, browser):
    handle, creds = store
    offer = pushed(("bev-cola-2for1", "Two for one on our best-selling drink"))
    push_offer(handle, "display", "display-1", offer)  # retained: the page gets it when it subscribes
    tab = browser.open(handle, "display", creds["display-1"], "?slotSeconds=1")
    wait_for(lambda: tab.get_attribute("#slot", "data-decision-id") == offer["decisionId"])
    assert tab.get_attribute("#slot", "data-source") == "live"
    assert tab.inner_text("#slot-title") == "Two for one on our best-selling drink"
    assert tab.get_attribute("#conn", "data-state") == "online"
    views = wait_for(lambda: _viewed(handle, offer["decisionId"]))
    assert [(v["properties"]["offerId"], v["properties"]["arm"], v["deviceId"]) for v in views] == [
        ("bev-cola-2for1", "treatment", "display-1")
    ]  # one proof of play, from this display
    assert axe_violations(tab) == []
    screenshot(tab, "display")

    # a new push while a two-offer loop runs takes over only at the loop's end
    two = pushed(("a-1", "First of two"), ("a-2", "Second of two"))
    push_offer(handle, "display", "display-1", two)
    wait_for(lambda: tab.get_attribute("#slot", "data-decision-id") == two["decisionId"])
    seen = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        seen.append(_shown(tab))
        time.sleep(0.1)
    third = pushed(("b-1", "Third set"))
    push_offer(handle, "display", "display-1", third)
    order = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        shown = _shown(tab)
        if not order or order[-1] != shown:
            order.append(shown)
        time.sleep(0.05)
    swap = next(i for i, s in enumerate(order) if s[0] == third["decisionId"])
    assert swap > 0 and order[swap - 1] == (two["decisionId"], "a-2"), order  # after the loop's last slot
    assert {o for d, o in seen if d == two["decisionId"]} == {"a-1", "a-2"}
    assert browser.foreign_requests(handle) == []
    tab.close()


def test_display_shows_the_offer_again_after_a_gateway_restart(tmp_path, browser):
    """…and every other page says it is offline while the gateway is away, then recovers by itself."""
    state = tmp_path / "state"
    ports = {"http": free_port("127.0.0.2"), "mqtt": free_port(), "mqtts": free_port("127.0.0.2")}
    config = pages_config(state, http={"port": ports["http"]}, mqtt={"managed_port": ports["mqtt"]},
                          broker={"mqtts_port": ports["mqtts"]})  # fmt: skip
    creds = register(config, [("display", "display-r"), ("kiosk", "kiosk-r"), ("tablet", "tablet-r"), ("ops", "ops-r")])
    offer = pushed(("bev-cola-2for1", "Two for one on our best-selling drink"))
    with running_gateway(config, features=FEATURES) as handle:
        push_offer(handle, "display", "display-r", offer)
        tab = browser.open(handle, "display", creds["display-r"], "?slotSeconds=1")
        others = {name: browser.context.new_page() for name in ("kiosk", "tablet", "ops")}
        for name, page in others.items():
            device = creds[f"{name}-r"]
            page.add_init_script(
                f"localStorage.setItem('edge.device', {json.dumps(json.dumps(device_storage(handle, device)))});"
            )
            page.goto(f"{handle.http}/pages/{name}?pollMs=1000")
        wait_for(lambda: tab.get_attribute("#slot", "data-source") == "live")
        for page in others.values():
            wait_for(lambda page=page: page.get_attribute("#conn", "data-state") == "online")
        before = int(tab.get_attribute("#slot", "data-received"))
    # the gateway (and its managed broker) is down: the saved playlist stays on screen, every page says so
    wait_for(lambda: tab.get_attribute("#conn", "data-state") in ("offline", "connecting"))
    assert tab.get_attribute("#slot", "data-source") == "cache"
    assert tab.get_attribute("#slot", "data-decision-id") == offer["decisionId"]
    assert "reconnecting" in tab.inner_text("#conn")
    screenshot(tab, "display-offline")
    for name, page in others.items():
        wait_for(lambda page=page: page.get_attribute("#conn", "data-state") == "offline", timeout=10)
        assert "reconnecting" in page.inner_text("#conn"), name
    with running_gateway(config, features=FEATURES) as handle:
        back = time.monotonic()
        wait_for(lambda: int(tab.get_attribute("#slot", "data-received")) > before, timeout=5)
        took = time.monotonic() - back
        assert tab.get_attribute("#slot", "data-source") == "live"
        assert tab.get_attribute("#slot", "data-decision-id") == offer["decisionId"]
        assert tab.get_attribute("#conn", "data-state") == "online"
        for page in others.values():
            wait_for(lambda page=page: page.get_attribute("#conn", "data-state") == "online", timeout=10)
        assert browser.foreign_requests(handle) == []
        for page in others.values():
            page.close()
    assert took < 5, took


TRIGGERS = """
version = "pages"
[touchpoints.zones.aisle-5]
display = "display-t"

[[triggers]]
id = "viewed-at-kiosk"
version = 1
audience = "anonymous"
holdout = 0.0
window_minutes = 30
signal = { kind = "event", event = "Product Viewed", where = { channel = "kiosk", "properties.zoneId" = "aisle-5" } }
action = { touchpoint = "display", content = "fixed", offer = { offerId = "snack-week", title = "Snack week at aisle 5", sku = "SKU00007" } }
contact = { per_unit_day = 5, per_visit = 5 }
[[triggers.variants]]
id = "fixed-a"
"""


def test_a_trigger_firing_plays_on_the_display_page_with_proof_of_play(tmp_path, browser):
    """No test-side push: a kiosk event fires a real trigger, the gateway publishes the retained
    offer, the open display page shows it and journals Offer Viewed with the firing's decisionId."""
    library = tmp_path / "triggers.toml"
    library.write_text(TRIGGERS)
    config = pages_config(tmp_path / "state", triggers={"path": str(library), "reload_seconds": 0.2})
    creds = register(config, [("display", "display-t"), ("kiosk", "kiosk-t")])
    with running_gateway(config, features=(*FEATURES, "edge.triggers")) as handle:
        tab = browser.open(handle, "display", creds["display-t"], "?slotSeconds=1")
        wait_for(lambda: tab.get_attribute("#conn", "data-state") == "online")
        event = {"type": "track", "event": "Product Viewed", "anonymousId": "visit-7", "messageId": uuid7(),
                 "properties": {"sku": "SKU00007", "zoneId": "aisle-5"}}  # fmt: skip
        answer = httpx.post(f"{handle.http}/v1/events", json={"batch": [event]}, verify=False, timeout=30,
                            headers={"Authorization": f"Bearer {creds['kiosk-t'].http_token}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        decision_id = wait_for(lambda: tab.get_attribute("#slot", "data-decision-id"), timeout=20)
        assert tab.inner_text("#slot-title") == "Snack week at aisle 5"
        firings = lambda: handle.gateway.context.journal.reader().execute(  # noqa: E731
            "SELECT decision_id, arm, outcome, device_id FROM trigger_firings").fetchall()  # fmt: skip
        assert wait_for(firings) == [(decision_id, "fixed-a", "delivered", "display-t")]  # written after the publish
        views = wait_for(lambda: _viewed(handle, decision_id))
        assert [(v["properties"]["offerId"], v["properties"]["arm"], v["deviceId"]) for v in views] == [
            ("snack-week", "fixed-a", "display-t")
        ]
