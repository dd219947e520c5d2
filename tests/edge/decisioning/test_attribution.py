from __future__ import annotations

import contextlib
import json

import pytest

from edge.decisioning.experiments import arm
from edge.decisioning.uplift import uplift

from .conftest import Gateway, running, settle


def _person_in(gw: Gateway, wanted: str) -> str:
    identity = gw.component.identity
    for i in range(1000):
        token = identity.token("loyaltyId", f"{i:08d}")
        if arm(token, "milk-q1", 0.2) == wanted:
            return f"{i:08d}"
    raise AssertionError("no such person")


async def _order(gw: Gateway, loyalty: str, sku: str, n: int = 1) -> None:
    result = await gw.publish(
        gw.source("pos", "pos-1", "serial"),
        [
            {
                "event": "Order Completed",
                "properties": {
                    "identifiers": {"loyaltyId": loyalty},
                    "orderId": f"o-{loyalty}-{sku}-{n}",
                    "products": [{"sku": sku, "quantity": 2, "price": 1.25}, {"sku": "SKU00049", "quantity": 1}],
                },
            }
        ],
    )
    assert result.accepted == 1, result.rejected


@pytest.mark.anyio
@pytest.mark.parametrize("wanted", ["treatment", "holdout"])
async def test_redemption_in_both_arms(gateway: Gateway, wanted: str) -> None:
    gw = gateway
    loyalty = _person_in(gw, wanted)
    token = gw.component.identity.token("loyaltyId", loyalty)
    async with running(gw):
        decision = await gw.component.decide(gw.source(), {"identifiers": {"loyaltyId": loyalty}, "basket": []})
        await gw.drain()  # the exposure is queued before the answer, journaled right after
        exposed = json.loads(gw.rows("SELECT body FROM events WHERE event='Offer Exposed'")[-1][0])
        milk = [o for o in exposed["properties"]["offers"] if o["offerId"] == "milk-10"]
        assert milk and milk[0]["arm"] == wanted
        assert ("milk-10" in {o["offerId"] for o in decision["offers"]}) == (wanted == "treatment")
        await gw.publish(
            gw.source(),
            [
                {
                    "event": "Offer Viewed",
                    "userId": token,
                    "properties": {"offerId": "milk-10", "decisionId": decision["decisionId"]},
                },
                {
                    "event": "Offer Clicked",
                    "userId": token,
                    "properties": {"offerId": "milk-10", "decisionId": decision["decisionId"]},
                },
            ],
        )
        gw.clock.advance(600)
        await _order(gw, loyalty, "SKU00000")
        await _order(gw, loyalty, "SKU00000", 2)  # a second purchase redeems nothing new
        await settle(gw)
    viewed, clicked = gw.rows(
        "SELECT viewed_ms, clicked_ms FROM exposures WHERE offer_id='milk-10' AND decision_id=?", decision["decisionId"]
    )[0]
    assert viewed and clicked
    assert gw.rows("SELECT arm, sku, quantity, revenue FROM redemptions WHERE offer_id='milk-10'") == [
        (wanted, "SKU00000", 2.0, 2.5)
    ]
    redeemed = [json.loads(b) for (b,) in gw.rows("SELECT body FROM events WHERE event='Offer Redeemed'")]
    assert [(r["userId"], r["properties"]["offerId"], r["properties"]["arm"]) for r in redeemed] == [
        (token, "milk-10", wanted)
    ]


@pytest.mark.anyio
async def test_outside_window_is_not_attributed(gateway: Gateway) -> None:
    gw = gateway
    loyalty = _person_in(gw, "treatment")
    await gw.component.decide(gw.source(), {"identifiers": {"loyaltyId": loyalty}, "basket": []})
    gw.clock.advance(25 * 3600)
    await _order(gw, loyalty, "SKU00000")
    assert gw.rows("SELECT COUNT(*) FROM redemptions") == [(0,)]


@pytest.mark.anyio
async def test_report_over_http(gateway: Gateway) -> None:
    gw = gateway
    for i in range(30):
        loyalty = f"{i:08d}"
        await gw.component.decide(gw.source(), {"identifiers": {"loyaltyId": loyalty}, "basket": []})
        if i % 3 == 0:
            await _order(gw, loyalty, "SKU00000")
    async with gw.client() as http:
        assert (await http.get("/v1/reports/uplift", headers=gw.auth("kiosk"))).status_code == 403
        report = (await http.get("/v1/reports/uplift", headers=gw.auth("ops"))).json()
    milk = next(c for c in report["campaigns"] if c["experiment"] == "milk-q1")
    assert milk["treatment_units"] + milk["holdout_units"] == 30
    assert milk["treatment_conversions"] + milk["holdout_conversions"] == 10


@pytest.mark.anyio
async def test_report_cli(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.decisioning import cli

    from .test_erasure import _parser

    gw = gateway
    for i in range(10):
        loyalty = f"{i:08d}"
        await gw.component.decide(gw.source(), {"identifiers": {"loyaltyId": loyalty}, "basket": []})
        await _order(gw, loyalty, "SKU00000")
    await gw.component.settled()  # every exposure and redemption journaled before the report reads them
    monkeypatch.setattr(cli, "_config", lambda path: gw.component.ctx.config)
    monkeypatch.setattr(cli, "_journal", lambda config: contextlib.nullcontext(gw.journal))
    parser = _parser()
    args = parser.parse_args(["report", "uplift", "--json"])
    assert args.func(args) == 0
    campaigns = {c["experiment"]: c for c in json.loads(capsys.readouterr().out)["campaigns"]}
    milk = campaigns["milk-q1"]
    assert milk["treatment_conversions"] + milk["holdout_conversions"] == 10
    args = parser.parse_args(["report", "uplift"])
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("campaign") and "milk-q1" in table


def test_uplift_statistics() -> None:
    result = uplift("x", 1000, 300, 1000, 200)
    assert result.absolute_uplift == pytest.approx(0.1)
    low, high = result.absolute_ci95 or (0, 0)
    assert low == pytest.approx(0.1 - 1.96 * (0.3 * 0.7 / 1000 + 0.2 * 0.8 / 1000) ** 0.5, rel=1e-3)
    assert high > 0.1 > low > 0
    assert result.relative_uplift == pytest.approx(0.5)
    rel_low, rel_high = result.relative_ci95 or (0, 0)
    assert rel_low < 0.5 < rel_high
    empty = uplift("y", 10, 0, 0, 0)
    assert empty.absolute_uplift is None and empty.relative_ci95 is None
