"""A simulated month of store visits through the real engine, with a known causal offer effect.

The store simulator (:func:`models.simulate.simulate_store`) fixes, per SKU, the offer's true
uplift in purchase probability (``truth.json`` → ``offer_uplift``) and its purchase behaviour.
Here its visits (``offers.csv``: who came when) are replayed through the gateway: each visit asks
the engine for a decision (the campaign's holdout decides who sees the offer), the customer
buys the campaign SKU with the simulator's probability rule
(:func:`models.simulate.offer_purchase_probability`: base + uplift when offered), and a POS
``Order Completed`` goes through the real ingest, identity stage and attribution. The uplift
report's 95 % interval is then compared with the true average effect of the exposed visits.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edge.decisioning.uplift import CampaignUplift, uplift_report
from models.catalog import Catalog, load_catalog
from models.simulate import offer_purchase_probability, simulate_store

from .conftest import Scored, make_gateway

EXPERIMENT = "sim-campaign"


@dataclass(frozen=True)
class MonthResult:
    seed: int
    true_effect: float
    estimate: CampaignUplift

    @property
    def covered(self) -> bool:
        low, high = self.estimate.absolute_ci95 or (1.0, -1.0)
        return low <= self.true_effect <= high


class PopularityRecommender:
    """Ranks by the simulated store's purchase counts: the campaign SKU is always a candidate."""

    def __init__(self, catalog: Catalog, counts: Counter[str]) -> None:
        self.catalog = catalog
        self._ranked = [Scored(sku, float(np.log1p(n))) for sku, n in counts.most_common(50)]

    async def arecommend(self, basket, history=(), context=None, k=None):  # type: ignore[no-untyped-def]
        return [s for s in self._ranked if s.sku not in basket][: k or 50]


def simulate_month(
    seed: int, workdir: Path, *, customers: int = 150, days: int = 28, skus: int = 120, holdout: float = 0.3
) -> MonthResult:
    store = workdir / f"store-{seed}"
    simulate_store(store, seed=seed, customers=customers, days=days, skus=skus)
    truth = json.loads((store / "truth.json").read_text())
    catalog = load_catalog(store / "catalog.csv")
    with open(store / "transactions.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    with open(store / "offers.csv", newline="") as fh:
        visits = list(csv.DictReader(fh))
    counts = Counter(line["sku"] for line in lines)
    sku = counts.most_common(1)[0][0]
    effect = float(truth["offer_uplift"][sku])
    bought = Counter(line["customer_id"] for line in lines if line["sku"] == sku)
    visits_of = Counter(v["customer_id"] for v in visits)
    overall = sum(bought.values()) / len(visits)

    def base_p(customer: str) -> float:  # the customer's own rate, shrunk to the store's
        return (bought[customer] + 5 * overall) / (visits_of[customer] + 5)

    offers = f"""
[[offers]]
id = "sim-offer"
title = "Simulated offer"
type = "percent_off"
sku = "{sku}"
value = 1.0
experiment = {{ id = "{EXPERIMENT}", holdout = {holdout}, unit = "visit" }}
"""
    gw = make_gateway(workdir / f"gw-{seed}", offers, attribution_window_hours=1.0)
    recommender = PopularityRecommender(catalog, counts)
    gw.component.recommender = lambda: recommender  # type: ignore[assignment]
    gw.component.engine.recommender = lambda: recommender  # type: ignore[assignment]
    rng = np.random.default_rng(seed + 1_000_003)
    effects: list[float] = []

    async def month() -> None:
        kiosk, pos = gw.source("kiosk", "kiosk-1"), gw.source("pos", "pos-1", "serial")
        for visit in visits:
            when = datetime.fromisoformat(visit["timestamp"]).replace(tzinfo=UTC)
            gw.clock.now = when.timestamp()
            loyalty = visit["customer_id"][1:]
            answer = await gw.component.decide(
                kiosk, {"identifiers": {"loyaltyId": loyalty}, "visitId": visit["visit_id"], "basket": []}
            )
            shown = any(o["offerId"] == "sim-offer" for o in answer["offers"])
            p = base_p(visit["customer_id"])
            effects.append(offer_purchase_probability(p, True, effect) - p)
            if rng.random() < offer_purchase_probability(p, shown, effect):
                gw.clock.now += 600
                await gw.publish(
                    pos,
                    [
                        {
                            "event": "Order Completed",
                            "properties": {
                                "identifiers": {"loyaltyId": loyalty},
                                "orderId": visit["visit_id"],
                                "products": [{"sku": sku, "quantity": 1, "price": 1.0}],
                            },
                        }
                    ],
                )
        await gw.drain()

    try:
        asyncio.run(month())
        (row,) = [r for r in uplift_report(gw.journal) if r.experiment == EXPERIMENT]
    finally:
        gw.ingestor.stop()
        gw.journal.close()
    return MonthResult(seed, float(np.mean(effects)), row)
