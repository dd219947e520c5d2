"""The history weights the gateway computes at serving time are the ones training and
evaluation score with: for a customer's last basket, ``HistoryKernel.weights`` on the raw
purchase events ``(item, days_ago)`` gives what ``customer_histories`` + ``kernel.weight`` give
on the dataset — for both visit shares (decayed and at-risk) — and the at-risk share is the
definition's, computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.data import Dataset, load_dataset
from models.history import HistoryKernel, at_risk_share, customer_histories, fit_history_kernel
from models.simulate import simulate_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out: Path = tmp_path_factory.mktemp("store")
    simulate_store(out, seed=5, customers=150, days=40, skus=120)
    return load_dataset(out)


@pytest.mark.parametrize(("decay", "at_risk"), [(1.0, False), (0.8, False), (1.0, True), (0.8, True)])
def test_serving_weights_are_the_training_weights(store: Dataset, decay: float, at_risk: bool) -> None:
    kernel, _ = fit_history_kernel(store, decay=decay, base=1.0, at_risk=at_risk)
    assert kernel.at_risk is at_risk
    targets = store.last_basket_mask()
    checked = 0
    for h in customer_histories(store, targets, kernel.share_rule):
        expected = kernel.weight(h.items, h.days_ago, h.counts, h.share, h.baskets_ago)
        cust = store.customer[h.basket]
        now = store.time[h.basket]
        events = [
            (int(item), (now - store.time[b]) / 86400.0)
            for b in range(h.basket)
            if store.customer[b] == cust
            for item in store.basket(b)
        ]
        got = dict(kernel.weights({int(i): int(i) for i in h.items}, events))
        assert sorted(got) == sorted(int(i) for i in h.items)
        assert np.allclose([got[int(i)] for i in h.items], expected, rtol=0, atol=1e-12)
        # a till that sends one line per unit: the same item twice in a visit is one purchase
        assert dict(kernel.weights({int(i): int(i) for i in h.items}, events + events)) == got
        checked += 1
    assert checked > 100


def test_at_risk_share_by_hand() -> None:
    # one item, visits on days 0, 2, 10, 11 and now; bought on days 0 and 10; gap 5 days
    presence = np.array([[1], [0], [1], [0], [0]], dtype=bool)
    days = np.array([0.0, 2.0, 10.0, 11.0, 12.0])
    out = at_risk_share(presence, days, np.array([5.0]), 1.0)

    def due(d: float) -> float:
        return round(1 - math.exp(-((d / 5.0) ** 2)), 6)

    # before visit 1: bought once at a visit where it was fully due (never bought before)
    assert out[1, 0] == pytest.approx(1 / (1 + 1))
    assert out[2, 0] == pytest.approx(1 / (1 + due(2) + 1))
    assert out[3, 0] == pytest.approx(2 / (1 + due(2) + due(10) + 1))
    assert out[4, 0] == pytest.approx(2 / (1 + due(2) + due(10) + due(1) + 1))
    # a habit bought whenever due reads higher than its plain share of visits (2 of 4)
    assert out[4, 0] > 2 / (4 + 1)


def test_kernel_json_round_trip_keeps_the_share_kind(store: Dataset) -> None:
    kernel, _ = fit_history_kernel(store, decay=1.0, at_risk=True)
    back = HistoryKernel.from_json(kernel.to_json(), store.n_items)
    assert back.at_risk is True and back.decay == 1.0
    old = kernel.to_json()
    del old["at_risk"]  # a model directory written before the at-risk share
    assert HistoryKernel.from_json(old, store.n_items).at_risk is False
    with pytest.raises(ValueError, match="at_risk"):
        HistoryKernel.from_json({**kernel.to_json(), "at_risk": "yes"}, store.n_items)


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, float("inf")])
def test_a_kernel_with_rates_outside_zero_to_one_does_not_load(store: Dataset, bad: float) -> None:
    """The runtime hands the kernel's weights to the graph without checking each one again
    (models.validation.WeightedHistory): the rates are checked once, when the model loads."""
    data = fit_history_kernel(store)[0].to_json()
    rates = np.array(data["rates"])
    rates.flat[7] = bad
    with pytest.raises(ValueError, match=r"rates must be repurchase rates in \[0, 1\]"):
        HistoryKernel.from_json({**data, "rates": rates.tolist()}, store.n_items)
