"""Property tests (hypothesis): whatever the event stream, contact policies hold, an offer is
never pushed to two touch points in one visit, and nobody without personalization consent
gets a person-level firing."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trigger_helpers import Consent, runtime

from devices.sim.triggers import make_event

LIBRARY = """
[touchpoints]
display = "display-1"
tablet = "tablet-1"
[policy]
max_per_visit = 3
[[triggers]]
id = "view-display"
audience = "anonymous"
holdout = 0.2
signal = { kind = "event", event = "Product Viewed" }
action = { touchpoint = "display", content = "fixed" }
contact = { per_unit_day = 2, per_visit = 2, cooldown_minutes = 5 }
[[triggers.variants]]
id = "a"
offer = { offerId = "shared-offer", title = "Shared" }
[[triggers.variants]]
id = "b"
offer = { offerId = "display-only", title = "Display" }
[[triggers]]
id = "view-kiosk"
audience = "anonymous"
holdout = 0.0
signal = { kind = "event", event = "Product Viewed", where = { channel = "kiosk" } }
action = { touchpoint = "kiosk", content = "fixed", offer = { offerId = "shared-offer", title = "Shared" } }
contact = { per_unit_day = 3, per_visit = 3 }
[[triggers]]
id = "person-tablet"
audience = "person"
holdout = 0.1
signal = { kind = "event", event = "Product Viewed" }
action = { touchpoint = "tablet", content = "fixed", offer = { offerId = "vip", title = "For you" } }
contact = { per_unit_day = 1, per_visit = 1 }
"""

PEOPLE = [f"ct_{i:032x}" for i in range(1, 7)]
T0 = 1_767_600_000_000 + 9 * 3_600_000

events_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),  # visit
        st.sampled_from([None, *PEOPLE]),  # identified?
        st.sampled_from(["kiosk-1", "kiosk-2"]),
        st.integers(0, 120_000),  # ms since the previous event
        st.sampled_from(["SKU00001", "SKU00002", "SKU00003"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=events_strategy, consented=st.sets(st.sampled_from(PEOPLE)))
def test_policies_collisions_and_consent_hold_for_any_stream(tmp_path_factory, stream, consented):
    rt, inbox, store = runtime(tmp_path_factory.mktemp("p"), LIBRARY, consent=Consent(set(consented)))
    now = T0
    fired = []
    for visit, person, kiosk, gap, sku in stream:
        now += gap
        anonymous = f"visit-{visit}"
        event = make_event(
            "Product Viewed", now, device=kiosk, anonymous_id=anonymous, user_id=person, properties={"sku": sku}
        )
        for f in asyncio.run(rt.on_events([event], now)):
            fired.append((f, now))
    # no person-level firing for anyone without consent
    for f, _ in fired:
        if f.trigger == "person-tablet":
            assert f.unit.removeprefix("p:") in consented
    # per visit: at most max_per_visit firings across all triggers; per trigger: its caps
    per_trigger_unit = Counter((f.trigger, f.unit) for f, _ in fired)
    caps = {"view-display": 2, "view-kiosk": 3, "person-tablet": 1}
    for (trigger, _unit), n in per_trigger_unit.items():
        assert n <= caps[trigger]
    # cooldown of view-display
    last: dict[str, int] = {}
    for f, at in fired:
        if f.trigger == "view-display":
            assert f.unit not in last or at - last[f.unit] >= 5 * 60_000
            last[f.unit] = at
    # an offer id goes to one touch point per visit
    shown: dict[tuple[str, str], str] = {}
    for f, _ in fired:
        for o in f.offers:
            key = (f.unit if f.unit.startswith("v:") else f.decision_id, o["offerId"])
            assert shown.setdefault(key, f.device_id) == f.device_id, (key, shown[key], f.device_id)
    # holdout firings never publish
    assert all(p["arm"] != "holdout" for _, p, _ in inbox.messages)
    assert sum(1 for f, _ in fired if f.topic) == len(inbox.messages)
    store.journal.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=events_strategy)
def test_visit_cap_across_triggers(tmp_path_factory, stream):
    rt, _, store = runtime(tmp_path_factory.mktemp("v"), LIBRARY, consent=Consent(set(PEOPLE)))
    now = T0
    per_visit: Counter[str] = Counter()
    for visit, person, kiosk, gap, sku in stream:
        now += gap
        event = make_event(
            "Product Viewed", now, device=kiosk, anonymous_id=f"visit-{visit}", user_id=person, properties={"sku": sku}
        )
        per_visit[f"visit-{visit}"] += len(asyncio.run(rt.on_events([event], now)))
    assert all(n <= 3 for n in per_visit.values()), per_visit
    store.journal.close()


def test_collision_ledger_keeps_an_offer_on_the_touch_point_that_showed_it_first():
    from edge.triggers.policy import ContactLedger

    ledger = ContactLedger()
    offers = [{"offerId": "x"}, {"offerId": "y"}]
    ledger.shown("visit", "display-1", offers[:1])
    assert ledger.without_collisions("visit", "kiosk-1", offers) == [{"offerId": "y"}]
    assert ledger.without_collisions("visit", "display-1", offers) == offers  # a refresh on the same screen
    assert ledger.without_collisions("other-visit", "kiosk-1", offers) == offers
