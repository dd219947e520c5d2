"""CUPED in the campaign uplift report, through the real engine: people with known purchase
propensities buy before the campaign (their pre-period spend, journaled as POS `Order Completed`
events), then the campaign reaches them (decisions with a 50 % holdout, person unit) and they
convert with their propensity plus the offer's true effect. The report's CUPED interval must
shrink by the factor the pre-period correlation predicts, cover the truth, and read only the
pre-period window (an old big order outside it changes nothing)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from edge.decisioning.uplift import PRE_PERIOD_DAYS, CampaignUplift, format_report, order_spend, uplift_report
from edge.stats import predicted_shrink

from .conftest import make_gateway

OFFERS = """
[[offers]]
id = "cuped-offer"
title = "Ten percent off the coffee"
type = "percent_off"
sku = "SKU00000"
value = 10.0
experiment = { id = "cuped-campaign", holdout = 0.5, unit = "person" }
"""
EFFECT = 0.08
DAY = 86_400.0


def _order(loyalty: str, order_id: str, sku: str, price: float) -> dict:
    return {
        "event": "Order Completed",
        "properties": {
            "identifiers": {"loyaltyId": loyalty},
            "orderId": order_id,
            "products": [{"sku": sku, "quantity": 1, "price": price}],
        },
    }


def campaign(workdir: Path, seed: int, people: int = 300) -> tuple[CampaignUplift, float]:
    gw = make_gateway(workdir / f"gw-{seed}", OFFERS, attribution_window_hours=2.0)
    rng = np.random.default_rng(seed)
    propensity = rng.uniform(0.05, 0.75, people)
    start = gw.clock.now

    async def run() -> None:
        pos, kiosk = gw.source("pos", "pos-1", "serial"), gw.source("kiosk", "kiosk-1")
        # long before the pre-period: one big order each, which the covariate must not count
        gw.clock.now = start - (PRE_PERIOD_DAYS + 10) * DAY
        for i in range(people):
            await gw.publish(pos, [_order(f"4{i:07d}", f"old-{i}", "SKU00020", float(rng.uniform(0, 2000)))])
        # the pre-period: spend that follows the propensity, with noise
        gw.clock.now = start - 5 * DAY
        for i, p in enumerate(propensity):
            await gw.publish(pos, [_order(f"4{i:07d}", f"pre-{i}", "SKU00010", float(100 * p + rng.normal(0, 8)))])
        for i, p in enumerate(propensity):
            gw.clock.now = start + i * 60
            loyalty = f"4{i:07d}"
            answer = await gw.component.decide(kiosk, {"identifiers": {"loyaltyId": loyalty}, "basket": []})
            shown = any(o["offerId"] == "cuped-offer" for o in answer["offers"])
            if rng.random() < p + (EFFECT if shown else 0.0):
                gw.clock.now += 600
                await gw.publish(pos, [_order(loyalty, f"buy-{i}", "SKU00000", 4.0)])
        await gw.drain()

    try:
        asyncio.run(run())
        (row,) = [r for r in uplift_report(gw.journal) if r.experiment == "cuped-campaign"]
    finally:
        gw.ingestor.stop()
        gw.journal.close()
    return row, EFFECT


@pytest.mark.integration
def test_cuped_shrinks_the_campaign_interval_as_the_correlation_predicts(tmp_path: Path) -> None:
    covered = 0
    for seed in range(3):
        row, truth = campaign(tmp_path, seed)
        assert row.treatment_units + row.holdout_units == 300 and row.cuped_applied
        assert 0.25 < row.cuped_rho < 0.7, row  # the propensity drives both spend and conversion
        plain = row.absolute_ci95[1] - row.absolute_ci95[0]
        adjusted = row.cuped_absolute_ci95[1] - row.cuped_absolute_ci95[0]
        assert adjusted / plain == pytest.approx(predicted_shrink(row.cuped_rho), abs=0.03)
        assert adjusted < plain
        low, high = row.cuped_absolute_ci95
        covered += low <= truth <= high
        assert math.isclose(
            row.cuped_absolute_uplift, (low + high) / 2, rel_tol=1e-9
        )  # a symmetric interval around the estimate
    assert covered >= 2
    text = format_report([row])
    assert "CUPED 95% CI pts" in text and f"{100 * row.cuped_absolute_ci95[0]:+.2f}" in text


def test_cuped_is_not_applied_without_a_pre_period_and_json_stays_compatible() -> None:
    from edge.decisioning.uplift import uplift, with_cuped

    row = uplift("c", 40, 10, 40, 5)
    # visit-only units have no pre-period spend: nothing to adjust with
    same = with_cuped(
        row, [("treatment", i < 10, None) for i in range(40)] + [("holdout", i < 5, None) for i in range(40)]
    )
    assert not same.cuped_applied and same.cuped_absolute_ci95 is None
    keys = set(row.as_json())
    assert {"experiment", "absolute_uplift", "absolute_ci95", "relative_uplift", "relative_ci95"} <= keys
    assert {"cuped_applied", "cuped_absolute_uplift", "cuped_absolute_ci95", "cuped_rho", "cuped_theta"} <= keys


@pytest.mark.parametrize(
    ("body", "spend"),
    [
        ('{"properties": {"products": [{"price": 2.5, "quantity": 2}, {"price": 1}]}}', 6.0),
        ('{"properties": {"revenue": 12.5}}', 12.5),
        ('{"properties": {"total": 3}}', 3.0),
        ('{"properties": {"products": [{"price": "free"}, {"price": NaN}, 7]}}', 0.0),
        ('{"properties": null}', 0.0),
        ("[]", 0.0),
        ("not json", 0.0),
        ('{"properties": {"revenue": true}}', 0.0),
    ],
)
def test_order_spend_reads_what_the_order_says_and_nothing_else(body: str, spend: float) -> None:
    assert order_spend(body) == spend
