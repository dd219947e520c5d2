"""Signals through the real runtime: sequences with absence, dwell with an associate cancelling,
resupply cycles and basket complements learnt from purchases, consent and anonymity."""

from __future__ import annotations

import asyncio

from trigger_helpers import Catalog, Consent, runtime

from devices.sim.triggers import make_event
from edge.triggers.delivery import OfferPublisher

T0 = 1_767_600_000_000 + 9 * 3_600_000  # 09:00 UTC on a Monday
MIN = 60_000
ALICE, BOB = "ct_" + "a" * 32, "ct_" + "b" * 32

SEQUENCE = """
[touchpoints]
kiosk = "kiosk-9"
[[triggers]]
id = "browse-no-buy"
audience = "anonymous"
holdout = 0.0
signal = { kind = "sequence", event = "Product Viewed", then_not = "Product Added", same = "sku", within_minutes = 10, where = { channel = "kiosk" } }
action = { touchpoint = "kiosk", content = "fixed", offer = { offerId = "nudge", title = "Still thinking?" } }
contact = { per_unit_day = 5, per_visit = 5 }
"""


def run(coro):
    return asyncio.run(coro)


def test_viewed_then_not_added_within_10_minutes_fires_at_the_deadline_only(tmp_path):
    rt, inbox, store = runtime(tmp_path, SEQUENCE)
    view = lambda sku, at: make_event("Product Viewed", at, anonymous_id="v1", properties={"sku": sku})  # noqa: E731
    run(rt.on_events([view("SKU00001", T0), view("SKU00002", T0 + MIN)], T0 + MIN))
    run(
        rt.on_events(
            [make_event("Product Added", T0 + 5 * MIN, anonymous_id="v1", properties={"sku": "SKU00001"})], T0 + 5 * MIN
        )
    )
    assert run(rt.on_tick(T0 + 10 * MIN - 1)) == []  # not yet
    assert [f.outcome for f in run(rt.on_tick(T0 + 10 * MIN))] == []  # SKU00001 was added: cancelled
    fired = run(rt.on_tick(T0 + 11 * MIN))  # SKU00002: viewed at +1 min, never added
    assert len(fired) == 1 and fired[0].touchpoint == "kiosk" and fired[0].device_id == "kiosk-1"  # where it happened
    topic, payload, retained = inbox.take()[0]
    assert topic == "retail/v1/sim/kiosk/kiosk-1/offers" and retained
    assert payload["offers"][0]["offerId"] == "nudge" and payload["arm"] == "default"
    assert run(rt.on_tick(T0 + 60 * MIN)) == []  # fires once
    assert rt.evaluator.pending == 0


DWELL = """
[touchpoints.zones.produce]
tablet = "tablet-1"
[[triggers]]
id = "dwell"
audience = "person"
holdout = 0.0
signal = { kind = "dwell", zone = "produce", minutes = 3, cancel_event = "Offer Viewed", cancel_where = { channel = "tablet" } }
action = { touchpoint = "tablet", content = "fixed", offer = { offerId = "help", title = "Ask me about produce" } }
[[triggers.variants]]
id = "greet"
message = "in produce for 3 min, nobody served them"
"""


class Profiles:
    def __init__(self, purchases=None):
        self.calls: list[str] = []
        self._purchases = purchases or {}

    def purchases(self, user_id, now_ms):
        self.calls.append(user_id)
        return self._purchases.get(user_id, [])

    def summary(self, user_id):
        self.calls.append(user_id)
        return {"userId": user_id, "visits": 4}


def test_dwell_without_associate_notifies_the_zone_tablet_with_profile_and_why(tmp_path):
    profiles = Profiles()
    rt, inbox, _ = runtime(tmp_path, DWELL, consent=Consent({ALICE, BOB}), profiles=profiles)

    def enter(who, at):
        return make_event(
            "Zone Entered",
            at,
            device="beacon-scanner",
            kind="beacon",
            user_id=who,
            properties={"zoneId": "produce"},
        )

    run(rt.on_events([enter(ALICE, T0), enter(BOB, T0)], T0))
    # an associate's tablet reports serving in produce: Bob's dwell is cancelled … no, both are in the zone
    run(
        rt.on_events(
            [
                make_event(
                    "Zone Exited",
                    T0 + MIN,
                    device="beacon-scanner",
                    kind="beacon",
                    user_id=BOB,
                    properties={"zoneId": "produce"},
                )
            ],
            T0 + MIN,
        )
    )
    fired = run(rt.on_tick(T0 + 3 * MIN))
    assert [f.unit for f in fired] == [f"p:{ALICE}"]
    topic, payload, retained = inbox.take()[0]
    assert topic == "retail/v1/sim/tablet/tablet-1/offers" and not retained
    assert payload["profile"] == {"userId": ALICE, "visits": 4}
    assert payload["why"] == "in produce for 3 min, nobody served them"


def test_dwell_is_cancelled_by_an_associate_nearby(tmp_path):
    rt, inbox, _ = runtime(tmp_path, DWELL, consent=Consent({ALICE}), profiles=Profiles())
    run(
        rt.on_events(
            [
                make_event(
                    "Zone Entered", T0, kind="beacon", device="b", user_id=ALICE, properties={"zoneId": "produce"}
                )
            ],
            T0,
        )
    )
    run(
        rt.on_events(
            [
                make_event(
                    "Offer Viewed",
                    T0 + MIN,
                    kind="tablet",
                    device="tablet-1",
                    user_id=ALICE,
                    properties={"offerId": "x", "zoneId": "produce"},
                )
            ],
            T0 + MIN,
        )
    )
    assert run(rt.on_tick(T0 + 10 * MIN)) == [] and inbox.take() == []


def test_without_personalization_consent_a_person_level_trigger_never_fires(tmp_path):
    profiles = Profiles()
    rt, inbox, _ = runtime(tmp_path, DWELL, consent=Consent(set()), profiles=profiles)
    run(
        rt.on_events(
            [
                make_event(
                    "Zone Entered", T0, kind="beacon", device="b", user_id=ALICE, properties={"zoneId": "produce"}
                )
            ],
            T0,
        )
    )
    assert run(rt.on_tick(T0 + 10 * MIN)) == [] and inbox.take() == [] and profiles.calls == []


def test_consent_withdrawn_while_pending_stops_the_firing(tmp_path):
    consent = Consent({ALICE})
    rt, inbox, _ = runtime(tmp_path, DWELL, consent=consent, profiles=Profiles())
    run(
        rt.on_events(
            [
                make_event(
                    "Zone Entered", T0, kind="beacon", device="b", user_id=ALICE, properties={"zoneId": "produce"}
                )
            ],
            T0,
        )
    )
    consent.allowed.clear()
    assert run(rt.on_tick(T0 + 10 * MIN)) == [] and inbox.take() == []


RESUPPLY = """
[touchpoints]
kiosk = "kiosk-1"
[[triggers]]
id = "resupply"
audience = "person"
holdout = 0.0
signal = { kind = "resupply", on = ["Customer Identified"] }
action = { touchpoint = "kiosk", content = "fixed", offer = { offerId = "restock", title = "Time to restock" } }
goal = { event = "Order Completed", sku = "signal" }
"""


def test_resupply_cycles_count_purchase_time_when_a_till_uploads_late(tmp_path):
    """A till back from an outage uploads four weeks of receipts at once: the cycle is learnt from
    when each purchase happened (its timestamp), not from the upload."""
    shoppers = [f"ct_{i:032x}" for i in range(1, 11)]
    now = T0 + 40 * 86_400_000
    upload = [
        make_event(
            "Order Completed",
            now,  # all received now …
            kind="pos",
            device="pos-1",
            user_id=u,
            properties={"products": [{"sku": "SKU00005"}]},
            occurred_ms=T0 + (d * 7 + i % 3 / 10) * 86_400_000,  # … bought weekly
        )
        for d in range(4)
        for i, u in enumerate(shoppers)
    ]
    rt, _, _ = runtime(tmp_path, RESUPPLY, consent=Consent(set(shoppers)), profiles=Profiles({}))
    run(rt.on_events(upload, now))
    assert 6.5 < (rt.cycles.cycle_days("dairy") or 0) < 7.5
    # a device clock ahead of the gateway cannot put a purchase in the future
    ahead = make_event("Order Completed", now, occurred_ms=now + 3 * 86_400_000)
    assert ahead.occurred_ms == now


def test_resupply_window_is_learnt_from_purchases(tmp_path):
    shoppers = [f"ct_{i:032x}" for i in range(1, 11)]
    # dairy (SKU00000, SKU00005 …) is bought every 7 days by every shopper: the cycle is learnt, not configured
    learn = [
        make_event(
            "Order Completed",
            T0 + (d * 7 + i % 3 / 10) * 86_400_000,
            kind="pos",
            device="pos-1",
            user_id=u,
            properties={"products": [{"sku": "SKU00005"}]},
        )
        for d in range(4)
        for i, u in enumerate(shoppers)
    ]
    learn.sort(key=lambda e: e.received_ms)
    now = T0 + 40 * 86_400_000
    profiles = Profiles({ALICE: [("SKU00005", 8.0), ("SKU00001", 2.0)], BOB: [("SKU00005", 3.0)]})
    rt, inbox, store = runtime(tmp_path, RESUPPLY, consent=Consent({ALICE, BOB, *shoppers}), profiles=profiles)
    run(rt.on_events(learn, now))
    assert rt.cycles.cycle_days("dairy") is not None and 6.5 < rt.cycles.cycle_days("dairy") < 7.5
    ident = lambda who: make_event("Customer Identified", now, user_id=who)  # noqa: E731
    fired = run(rt.on_events([ident(ALICE), ident(BOB)], now))
    assert [f.unit for f in fired] == [f"p:{ALICE}"]  # 8 days ≥ 7; Bob bought 3 days ago
    rt.flush()
    goal = store.journal.reader().execute("SELECT goal FROM trigger_firings").fetchone()[0]
    assert '"category": "dairy"' in goal
    # Alice buys dairy within the window: converted
    run(
        rt.on_events(
            [
                make_event(
                    "Order Completed",
                    now + 600_000,
                    kind="pos",
                    device="pos-1",
                    user_id=ALICE,
                    properties={"products": [{"sku": "SKU00010"}]},
                )
            ],
            now + 600_000,
        )
    )
    rt.flush()
    assert store.journal.reader().execute("SELECT conversion FROM trigger_firings").fetchone()[0] == "goal"


COMPLEMENT = """
[touchpoints]
pos = "pos-1"
[[triggers]]
id = "complement"
audience = "anonymous"
holdout = 0.0
signal = { kind = "complement", where = { channel = "pos" } }
action = { touchpoint = "pos", content = "fixed", offer = { offerId = "pair", title = "Goes well with …" } }
contact = { per_unit_day = 3, per_visit = 3 }
"""


def test_basket_item_without_its_usual_complement_at_the_pos(tmp_path):
    rt, inbox, _ = runtime(tmp_path, COMPLEMENT)
    import random

    rng = random.Random(1)
    baskets = []
    other = [f"SKU{n:05d}" for n in range(2, 50) if n % 5 >= 2]  # produce, snacks, beverages
    for i in range(120):  # a third of the baskets: bakery (SKU00001) with dairy (SKU00000); the rest others
        skus = ["SKU00001", "SKU00000"] if i % 3 == 0 else [rng.choice(other)]
        skus.append(rng.choice(other))
        baskets.append(
            make_event(
                "Order Completed",
                T0 - 86_400_000 + i * MIN,
                kind="pos",
                device="pos-2",
                anonymous_id=f"cart{i}",
                properties={"products": [{"sku": s} for s in skus]},
            )
        )
    run(rt.on_events(baskets, T0))
    assert rt.complements.complement_of("bakery") == "dairy"

    def add(cart, sku, at):
        return make_event(
            "Product Added",
            at,
            kind="pos",
            device="pos-1",  # noqa: E731
            anonymous_id=cart,
            properties={"sku": sku},
        )

    run(rt.on_events([add("with", "SKU00000", T0), add("with", "SKU00001", T0 + 1000)], T0 + 1000))
    run(rt.on_events([add("paid", "SKU00001", T0 + 1500)], T0 + 1500))
    run(
        rt.on_events(
            [
                make_event(
                    "Order Completed",
                    T0 + 9000,
                    kind="pos",
                    device="pos-1",
                    anonymous_id="paid",
                    properties={"products": [{"sku": "SKU00001"}]},
                )
            ],
            T0 + 9000,
        )
    )
    run(rt.on_events([add("without", "SKU00001", T0 + 2000)], T0 + 2000))
    assert inbox.take() == []  # nothing yet: the till is still scanning
    fired = run(rt.on_tick(T0 + 2000 + 30_000))
    assert len(fired) == 1 and fired[0].unit == "v:without"  # "with" got its dairy, "paid" paid
    topic, payload, retained = inbox.take()[0]
    assert topic == "retail/v1/sim/pos/pos-1/offers" and retained and payload["offers"][0]["offerId"] == "pair"


ANONYMOUS_ENGINE = """
[touchpoints]
display = "display-1"
[[triggers]]
id = "anon-view"
audience = "anonymous"
holdout = 0.0
signal = { kind = "event", event = "Product Viewed" }
action = { touchpoint = "display", content = "engine" }
contact = { per_unit_day = 9, per_visit = 9 }
[[triggers]]
id = "anon-seq"
audience = "anonymous"
holdout = 0.0
signal = { kind = "sequence", event = "Product Viewed", then_not = "Product Added", same = "sku", within_minutes = 1 }
action = { touchpoint = "display", content = "engine" }
contact = { per_unit_day = 9, per_visit = 9 }
[policy]
max_per_visit = 50
"""


def test_anonymous_triggers_use_no_history_and_send_no_identity(tmp_path):
    bodies = []

    async def decide(source, body):
        bodies.append(body)
        return {
            "decisionId": f"d{len(bodies)}",
            "arm": "treatment",
            "personalized": False,
            "offers": [{"offerId": f"o{len(bodies)}", "sku": "SKU00003", "title": "t", "score": 1.0, "reasons": []}],
        }

    profiles = Profiles({ALICE: [("SKU00005", 30.0)]})
    rt, inbox, _ = runtime(tmp_path, ANONYMOUS_ENGINE, consent=Consent({ALICE}), profiles=profiles, decide=decide)
    events = [
        make_event(
            "Product Viewed", T0 + i * 1000, user_id=ALICE, anonymous_id="visit-a", properties={"sku": f"SKU0000{i}"}
        )
        for i in range(3)
    ]
    run(rt.on_events(events, T0 + 3000))
    run(rt.on_tick(T0 + 5 * MIN))
    assert len(bodies) == 6 and all("userId" not in b for b in bodies)
    assert profiles.calls == []  # no purchase history, no profile read
    assert all(f.user_id is None for f in [])  # (the candidate carries no person)
    assert all(p["offers"] for _, p, _ in inbox.take())


def test_holdout_firing_is_logged_and_delivers_nothing(tmp_path):
    text = SEQUENCE.replace("holdout = 0.0", "holdout = 0.5").replace(
        'kind = "sequence", event = "Product Viewed", then_not = "Product Added", same = "sku", within_minutes = 10',
        'kind = "event", event = "Product Viewed"',
    )
    rt, inbox, store = runtime(tmp_path, text)
    fired = []
    for i in range(200):
        fired += run(
            rt.on_events(
                [make_event("Product Viewed", T0 + i, anonymous_id=f"v{i}", properties={"sku": "SKU00001"})], T0 + i
            )
        )
    held = [f for f in fired if f.arm == "holdout"]
    assert 70 < len(held) < 130 and all(f.outcome == "holdout" and f.topic is None for f in held)
    assert all(p["arm"] != "holdout" for _, p, _ in inbox.take())
    assert len(inbox.messages) == 0
    rt.flush()
    (n,) = (
        store.journal.reader()
        .execute("SELECT COUNT(*) FROM trigger_firings WHERE arm = 'holdout' AND delivered = 0")
        .fetchone()
    )
    assert n == len(held)


def test_offer_publisher_refuses_a_holdout_payload():
    import pytest

    pub = OfferPublisher(type("P", (), {"publish": lambda *a, **k: None})(), "s")
    with pytest.raises(ValueError):
        pub.payload(decision_id="d", arm="holdout", trigger=None, offers=[], issued_ms=0, valid_ms=1)
    assert Catalog().category_of("bad") is None


def test_erasure_removes_the_persons_firings(tmp_path):
    rt, _, store = runtime(tmp_path, DWELL, consent=Consent({ALICE, BOB}), profiles=Profiles())
    for who in (ALICE, BOB):
        run(
            rt.on_events(
                [
                    make_event(
                        "Zone Entered", T0, kind="beacon", device="b", user_id=who, properties={"zoneId": "produce"}
                    )
                ],
                T0,
            )
        )
    run(rt.on_tick(T0 + 3 * MIN))
    rt.flush()
    assert store.erase(ALICE) == 1
    left = store.journal.reader().execute("SELECT unit FROM trigger_firings").fetchall()
    assert left == [(f"p:{BOB}",)]


def test_retention_prunes_old_firings(tmp_path):
    rt, _, store = runtime(tmp_path, SEQUENCE)
    run(rt.on_events([make_event("Product Viewed", T0, anonymous_id="v1", properties={"sku": "SKU00001"})], T0))
    run(rt.on_tick(T0 + 11 * MIN))
    rt.flush()
    assert store.prune(T0) == 0 and store.prune(T0 + 12 * MIN) == 1
