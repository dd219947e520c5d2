"""The engine on the real recommender runtime (a small model trained from the simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.build import train_model
from models.runtime import Recommender
from models.simulate import simulate_store

from .conftest import Gateway, make_gateway


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model")
    simulate_store(root / "store", seed=3, customers=200, days=30, skus=200)
    train_model(root / "store", root / "model", evaluate=False)
    return root / "model"


class Spy:
    """The real recommender, recording the history each call received."""

    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        self.catalog = rec.catalog
        self.history_weights = rec.history_weights
        self.histories: list[list[Any]] = []

    async def arecommend(self, basket: Any, history: Any = (), context: Any = None, k: Any = None) -> Any:
        self.histories.append(list(history))
        return await self.rec.arecommend(basket, history, context, k)


@pytest.fixture
def real(tmp_path: Path, model_dir: Path) -> Any:
    rec = Recommender.load(model_dir)
    skus = rec.catalog.skus
    offers = "".join(
        f'[[offers]]\nid = "o{i}"\ntitle = "offer {i}"\ntype = "percent_off"\nsku = "{sku}"\n'
        f'value = {1 + i % 3}\nexperiment = {{ id = "e{i % 4}", holdout = 0.1 }}\n\n'
        for i, sku in enumerate(skus[:120])
    )
    gw = make_gateway(tmp_path, offers)
    spy = Spy(rec)
    gw.component.recommender = lambda: spy  # type: ignore[assignment]
    gw.component.engine.recommender = lambda: spy  # type: ignore[assignment]
    yield gw, spy
    gw.ingestor.stop()
    gw.journal.close()
    rec.close()


@pytest.mark.anyio
async def test_real_model_decisions_and_history(real: tuple[Gateway, Spy]) -> None:
    gw, spy = real
    token = gw.component.identity.token("loyaltyId", "424242")
    anonymous = await gw.component.decide(gw.source(), {"visitId": "v0", "basket": [spy.catalog.skus[5]]})
    assert anonymous["offers"] and not anonymous["personalized"] and spy.histories[-1] == []
    await gw.publish(
        gw.source(),
        [
            {
                "event": "Consent Updated",
                "userId": token,
                "properties": {"categoryPreferences": {"personalization": True}},
            }
        ],
    )
    bought = [{"sku": s, "quantity": 1, "price": 1.0} for s in spy.catalog.skus[10:14]]
    await gw.publish(
        gw.source("pos", "pos-1", "serial"),
        [{"event": "Order Completed", "userId": token, "properties": {"products": bought}}],
    )
    gw.clock.advance(3 * 86400)
    answer = await gw.component.decide(gw.source(), {"userId": token, "basket": []})
    assert answer["personalized"]
    history = dict(spy.histories[-1])
    assert set(history) == {line["sku"] for line in bought}  # the model's own history kernel
    assert all(w >= 0 for w in history.values())


@pytest.mark.anyio
async def test_a_long_profile_passes_its_heaviest_items_not_its_oldest(real: tuple[Gateway, Spy]) -> None:
    """A person with more distinct purchases than ``decisioning.history_items`` (50): the
    history is cut to the items the model's kernel weighs most, as the recommender's own
    ``max_history`` cap cuts it (the weights it drops count least in the score). Before, the cut
    kept the first 50 in purchase order, whatever their weight: the oldest items, and none of
    the last order's."""
    gw, spy = real
    token = gw.component.identity.token("loyaltyId", "515151")
    await gw.publish(
        gw.source(),
        [
            {
                "event": "Consent Updated",
                "userId": token,
                "properties": {"categoryPreferences": {"personalization": True}},
            }
        ],
    )
    skus = spy.catalog.skus
    for day, lines in enumerate((skus[10:40], skus[40:70], skus[100:101])):
        bought = [{"sku": s, "quantity": 1, "price": 1.0} for s in lines]
        await gw.publish(
            gw.source("pos", "pos-1", "serial"),
            [{"event": "Order Completed", "userId": token, "properties": {"products": bought}}],
        )
        gw.clock.advance((10 - 4 * day) * 86400)
    answer = await gw.component.decide(gw.source(), {"userId": token, "basket": []})
    assert answer["personalized"]
    passed = spy.histories[-1]
    limit = gw.component.engine.settings.history_items
    weights = dict(spy.rec.history_weights(gw.component.engine.profiles.purchases(token, int(gw.clock() * 1000))))
    assert len(weights) == 61 and len(passed) == limit
    assert dict(passed) == {s: weights[s] for s in dict(passed)}  # the kernel's own weights
    assert min(w for _, w in passed) >= max(w for s, w in weights.items() if s not in dict(passed))
    first_bought = list(weights)[:limit]  # the kernel lists items in first-purchase order
    assert set(dict(passed)) != set(first_bought)
