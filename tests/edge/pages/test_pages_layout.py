"""Every page on a phone-sized touch screen: no sideways scrolling, touch targets of at least
44 px, a label for every control; and every page's CSP allows no host but the gateway."""

from __future__ import annotations

import httpx
import pytest
from pagekit import wait_for

from edge.pages import CSP

pytestmark = pytest.mark.integration

PAGES = [("kiosk", "kiosk-1"), ("display", "display-1"), ("tablet", "tablet-1"), ("ops", "ops-1"), ("pair", None)]


@pytest.mark.parametrize(("page", "device"), PAGES)
def test_page_fits_a_phone_and_is_touch_friendly(store, browser, page, device):
    handle, creds = store
    tab = browser.open(handle, page, creds[device] if device else None)
    tab.set_viewport_size({"width": 360, "height": 740})
    wait_for(lambda: tab.get_attribute("#conn", "data-state") in ("online", "offline"))
    if page == "kiosk":
        tab.get_by_role("button", name="Browse without signing in").click()
        wait_for(lambda: tab.locator("#products .card").count() > 0)
    overflow = tab.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = tab.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 362)
        .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)""")
    assert overflow <= 1, f"{page} scrolls sideways by {overflow}px at 360px: {wide}"
    targets = tab.evaluate("""() => [...document.querySelectorAll('button, a.button, input, select')]
        .filter(e => e.offsetParent !== null)
        .map(e => { const r = e.getBoundingClientRect(); return [e.id || e.textContent.trim() || e.name, r.width, r.height]; })""")
    assert targets or page in ("display", "ops")  # these two have no control until something happens
    small = [t for t in targets if min(t[1], t[2]) < 24 or max(t[1], t[2]) < 44]
    assert small == [], small
    unlabelled = tab.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.id || e.name)""")
    assert unlabelled == []
    tab.close()


def test_pages_forbid_every_other_host(store):
    handle, _creds = store
    for page, _device in PAGES:
        answer = httpx.get(f"{handle.http}/pages/{page}", verify=False)
        assert answer.status_code == 200 and answer.headers["content-security-policy"] == CSP
    assert "connect-src 'self'" in CSP and "default-src 'self'" in CSP and "script-src 'self'" in CSP
    assert httpx.get(f"{handle.http}/pages/nope", verify=False).status_code == 404
    index = httpx.get(f"{handle.http}/pages/", verify=False)
    assert index.status_code == 200 and all(f'href="/pages/{p}"' in index.text for p, _ in PAGES)
    assert httpx.get(f"{handle.http}/pages/static/..%2Fpairing.py", verify=False).status_code == 404
