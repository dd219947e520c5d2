"""Shared fixtures: one small simulated store and a model trained on it (built once per run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.build import train_model
from models.simulate import simulate_store


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store")
    simulate_store(out, seed=5, customers=300, days=30, skus=200)
    return out


@pytest.fixture(scope="session")
def small_model(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    train_model(small_store, out, top_k=20)
    return out
