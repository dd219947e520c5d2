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
