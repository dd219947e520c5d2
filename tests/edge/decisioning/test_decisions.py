from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import InvalidEvent

from .conftest import RAW_LOYALTY, Gateway, make_gateway

CONSENT_ALL = {"personalization": True, "analytics": True, "cdp_sync": True}


async def _consent(gw: Gateway, token: str, prefs: dict[str, bool]) -> None:
    result = await gw.publish(
        gw.source(), [{"event": "Consent Updated", "userId": token, "properties": {"categoryPreferences": prefs}}]
    )
    assert result.accepted == 1, result.rejected


@pytest.mark.anyio
async def test_http_decision_and_exposure_event(gateway: Gateway) -> None:
    async with gateway.client() as http:
        for role in ("kiosk", "display", "tablet", "pos"):
            reply = await http.post(
                "/v1/decisions", headers=gateway.auth(role), json={"visitId": f"v-{role}", "basket": ["SKU00004"]}
            )
            assert reply.status_code == 200, reply.text
        assert (await http.post("/v1/decisions", headers=gateway.auth("ops"), json={})).status_code == 403
        bad = await http.post("/v1/decisions", headers=gateway.auth("kiosk"), json={"basket": "x"})
        assert bad.status_code == 422 and bad.json()["error"] == "wrong_type"
        answer = (
            await http.post(
                "/v1/decisions",
                headers=gateway.auth("kiosk"),
                json={"identifiers": {"loyaltyId": RAW_LOYALTY}, "basket": [], "zone": "aisle-5"},
            )
        ).json()
    await gateway.drain()
    assert set(answer) == {"decisionId", "arm", "personalized", "offers"}
    for offer in answer["offers"]:
        assert set(offer) == {"offerId", "sku", "title", "score", "reasons"}
    exposed = gateway.rows("SELECT body FROM events WHERE event = 'Offer Exposed'")
    assert len(exposed) == 5
    last = json.loads(exposed[-1][0])
    assert last["userId"] == gateway.component.identity.token("loyaltyId", RAW_LOYALTY)
    assert last["properties"]["decisionId"] == answer["decisionId"]
    arms = {o["offerId"]: o["arm"] for o in last["properties"]["offers"]}
    shown = {o["offerId"] for o in answer["offers"]}
    assert shown == {k for k, v in arms.items() if v == "treatment"}
    assert gateway.rows("SELECT COUNT(*) FROM exposures") == [
        (sum(len(json.loads(b)["properties"]["offers"]) for (b,) in exposed),)
    ]


@pytest.mark.anyio
async def test_deterministic_for_same_inputs_and_clock(tmp_path: Path) -> None:
    answers = []
    for name in ("a", "b"):
        gw = make_gateway(tmp_path / name)
        try:
            request = {"anonymousId": "visit-42", "basket": ["SKU00002"], "zone": "aisle-5", "weather": "rain"}
            answers.append(await gw.component.decide(gw.source(), request))
        finally:
            gw.ingestor.stop()
            gw.journal.close()
    assert answers[0] == answers[1]


@pytest.mark.anyio
async def test_no_personalization_means_no_history(gateway: Gateway) -> None:
    gw, src = gateway, gateway.source()
    identity = gw.component.identity
    alice, bob = identity.token("appId", "alice-app"), identity.token("appId", "bob-app")
    await _consent(gw, alice, CONSENT_ALL)
    await _consent(gw, bob, {"analytics": True, "cdp_sync": True})
    for token in (alice, bob):
        result = await gw.publish(
            src,
            [
                {"event": "Product Viewed", "userId": token, "properties": {"sku": sku}}
                for sku in ("SKU00003", "SKU00008", "SKU00013")
            ],
        )
        assert result.accepted == 3
    assert gw.component.profiles.get(bob) is None and gw.component.profiles.get(alice)
    request = {"basket": ["SKU00009"], "zone": "aisle-5", "visitId": "same-visit"}
    for_alice = await gw.component.decide(src, {**request, "userId": alice})
    alice_call = gw.recommender.calls[-1]
    for_bob = await gw.component.decide(gw.source("kiosk", "kiosk-2"), {**request, "visitId": "v-b", "userId": bob})
    bob_call = gw.recommender.calls[-1]
    anonymous = await gw.component.decide(gw.source("kiosk", "kiosk-3"), {**request, "visitId": "v-c"})
    anon_call = gw.recommender.calls[-1]
    assert alice_call["history"] and for_alice["personalized"]
    assert bob_call["history"] == [] and not for_bob["personalized"]
    # Bob's model input is exactly an anonymous person's: basket and context, nothing more
    assert (bob_call["basket"], bob_call["context"]) == (anon_call["basket"], anon_call["context"])
    # and the offers chosen for him (both arms: his arms differ, being hashed from his token)
    # are exactly an anonymous person's
    assert _chosen(gw, for_bob["decisionId"]) == _chosen(gw, anonymous["decisionId"])
    assert alice_call["history"] != bob_call["history"]


def _chosen(gw: Gateway, decision_id: str) -> list[tuple[str, str, int]]:
    for (body,) in gw.rows("SELECT body FROM events WHERE event = 'Offer Exposed'"):
        props = json.loads(body)["properties"]
        if props["decisionId"] == decision_id:
            return [(o["offerId"], o["sku"], o["rank"]) for o in props["offers"]]
    raise AssertionError("no exposure")


@pytest.mark.anyio
async def test_applicability(gateway: Gateway) -> None:
    src = gateway.source()
    answer = await gateway.component.decide(src, {"visitId": "a", "basket": ["SKU00000"], "stock": {"SKU00001": 0}})
    arms = json.loads(gateway.rows("SELECT body FROM events WHERE event='Offer Exposed'")[-1][0])
    offered = {o["offerId"] for o in arms["properties"]["offers"]}
    assert "milk-10" not in offered  # its SKU is in the basket
    assert "bread-2for1" not in offered  # out of stock
    assert answer["decisionId"]
    gateway.clock.advance(3600 * 24 * 400)  # long past nothing; offers have no validity dates
    zoned = await gateway.component.decide(src, {"visitId": "b", "basket": [], "zone": "aisle-5"})
    reasons = [r for o in zoned["offers"] for r in o["reasons"]]
    assert any(r == "zone aisle-5" for r in reasons) or zoned["arm"] in ("holdout", "mixed")


PEOPLE = 4
DEVICES = (("kiosk", "kiosk-1"), ("display", "display-1"), ("tablet", "tablet-1"), ("pos", "pos-1"))
step = st.tuples(
    st.integers(0, PEOPLE - 1),
    st.integers(0, len(DEVICES) - 1),
    st.integers(0, 3),
    st.sampled_from([0, 1, 5, 30, 600, 60 * 24]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, min_size=1, max_size=40), consented=st.lists(st.booleans(), min_size=PEOPLE, max_size=PEOPLE)
)
def test_caps_and_collisions_hold_over_random_visits(
    steps: list[tuple[int, int, int, int]], consented: list[bool]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gw = make_gateway(Path(tmp))
        try:
            asyncio.run(_visits(gw, steps, consented))
            _check_invariants(gw)
        finally:
            gw.ingestor.stop()
            gw.journal.close()


async def _visits(gw: Gateway, steps: list[tuple[int, int, int, int]], consented: list[bool]) -> None:
    tokens = [gw.component.identity.token("appId", f"person-{i}") for i in range(PEOPLE)]
    for token, ok in zip(tokens, consented, strict=True):
        await _consent(gw, token, CONSENT_ALL if ok else {"analytics": True})
    for person, device, visit, minutes in steps:
        gw.clock.advance(minutes * 60)
        kind, device_id = DEVICES[device]
        await gw.component.decide(
            gw.source(kind, device_id),
            {"userId": tokens[person], "visitId": f"p{person}-v{visit}", "basket": [], "zone": "aisle-5"},
        )
    await gw.drain()


def _check_invariants(gw: Gateway) -> None:
    caps = {o.id: o.caps for o in gw.component.offers.offers}
    rows = gw.rows("SELECT offer_id, person_key, visit_key, device_id, channel, day FROM exposures")
    per_person: dict[tuple[str, str, str], int] = {}
    per_channel: dict[tuple[str, str, str, str], int] = {}
    per_visit: dict[tuple[str, str, str], list[str]] = {}
    for offer, person, visit, device, channel, day in rows:
        per_person[(person, offer, day)] = per_person.get((person, offer, day), 0) + 1
        per_channel[(person, offer, channel, day)] = per_channel.get((person, offer, channel, day), 0) + 1
        per_visit.setdefault((visit, offer, day), []).append(device)
    for (_, offer, _), n in per_person.items():
        assert caps[offer].per_person_day is None or n <= caps[offer].per_person_day
    for (_, offer, _, _), n in per_channel.items():
        assert caps[offer].per_channel_day is None or n <= caps[offer].per_channel_day
    for (_, offer, _), devices in per_visit.items():
        assert len(set(devices)) == 1, "the same offer on two touch points in one visit"
        assert caps[offer].per_visit is None or len(devices) <= caps[offer].per_visit


@pytest.mark.anyio
async def test_mqtt_handler_replies_with_the_refusal(gateway: Gateway) -> None:
    handler = gateway.component.decide_handler()
    reply = await handler(gateway.source("display", "display-1"), {"basket": [1, 2]})
    assert reply["error"] == "wrong_type"
    reply = await handler(gateway.source("display", "display-1"), {"userId": "alice@example.com"})
    assert reply["error"] == "bad_identifier" and "alice" not in reply["detail"]
    gateway.component.set_stock({"SKU00000": 0, "SKU00001": 0})
    reply = await handler(gateway.source("display", "display-1"), {"visitId": "v", "basket": []})
    assert not {"milk-10", "bread-2for1"} & {o["offerId"] for o in reply["offers"]}


@pytest.mark.anyio
async def test_profile_route_is_tablet_only_and_consented_only(gateway: Gateway) -> None:
    gw = gateway
    token = gw.component.identity.token("appId", "carol-app")
    await _consent(gw, token, CONSENT_ALL)
    await gw.publish(gw.source(), [{"event": "Product Added", "userId": token, "properties": {"sku": "SKU00003"}}])
    async with gw.client() as http:
        assert (await http.get(f"/v1/customers/{token}/profile", headers=gw.auth("kiosk"))).status_code == 403
        assert (await http.get(f"/v1/customers/{token}/profile", headers=gw.auth("ops"))).status_code == 403
        reply = await http.get(f"/v1/customers/{token}/profile", headers=gw.auth("tablet"))
        assert reply.status_code == 200
        assert reply.json()["recentItems"][0]["sku"] == "SKU00003" and reply.json()["visits"] == 1
        assert reply.json()["categories"] == {"snacks": 1}
        await _consent(gw, token, {"personalization": False})
        assert (await http.get(f"/v1/customers/{token}/profile", headers=gw.auth("tablet"))).status_code == 404
        assert (await http.get("/v1/customers/bob/profile", headers=gw.auth("tablet"))).status_code == 422


@pytest.mark.anyio
async def test_profiles_beyond_the_cache_are_read_back(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, profile_cache=1)
    try:
        tokens = [gw.component.identity.token("appId", f"lru-{i}") for i in range(3)]
        for i, token in enumerate(tokens):
            await _consent(gw, token, CONSENT_ALL)
            await gw.publish(
                gw.source(),
                [{"event": "Order Completed", "userId": token, "properties": {"products": [{"sku": f"SKU0000{i}"}]}}],
            )
        for i, token in enumerate(tokens):
            profile = gw.component.profiles.get(token)
            assert profile is not None and list(profile.items) == [f"SKU0000{i}"]
            assert gw.component.profiles.purchases(token, int(gw.clock() * 1000)) == [(f"SKU0000{i}", 0.0)]
    finally:
        gw.ingestor.stop()
        gw.journal.close()


@pytest.mark.anyio
async def test_a_failed_decision_is_counted_for_the_rollout_health(gateway: Gateway) -> None:
    """A decision the gateway fails to answer (here: the recommender raises) is counted in
    ``edge_decision_failures_total`` and reported as the store's ``errors`` in its health report;
    a malformed request is the client's fault and is not."""
    from sync.store_health import decision_stats

    registry = gateway.component.ctx.metrics
    source = gateway.source()
    await gateway.component.decide(source, {"visitId": "v-ok", "basket": []})
    assert decision_stats(registry)[:2] == (1, 0)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("scoring table unreadable")

    gateway.recommender.recommend = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await gateway.component.decide(source, {"visitId": "v-broken", "basket": []})
    with pytest.raises(InvalidEvent):
        await gateway.component.decide(source, {"visitId": 7, "basket": "not a list"})
    assert decision_stats(registry)[:2] == (1, 1)
