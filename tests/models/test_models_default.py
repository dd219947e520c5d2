"""The shipped default model loads, and rebuilds bit for bit from its recorded recipe.

The full-size rebuild (seed 7, 3,000 customers, 90 days, 3,000 SKUs) takes ≈ 2–3 min of CPU, more
on a busy shared 2-vCPU VM, so it is marked ``slow`` to keep the default suite under
90 s; ``test_training_is_bit_identical`` runs the same simulate → train path at a small size in
every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import DEFAULT_MODEL_DIR, Context, Recommender
from models.build import train_model
from models.simulate import simulate_store
from models.train import TrainConfig


def manifest() -> dict:
    return json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())


def test_default_model_loads_and_recommends() -> None:
    rec = Recommender.load(DEFAULT_MODEL_DIR)
    result = rec.recommend([rec.catalog.skus[0]], [], Context(hour=17, weekday=4), k=10)
    assert len(result) == 10
    metrics = manifest()["metrics"]
    for baseline in ("popularity", "personal_top_frequency", "item_knn", "tifu_knn", "tifu_item_knn"):
        assert metrics["model"]["recall@10"] > metrics[baseline]["recall@10"]
        assert metrics["model"]["ndcg@10"] > metrics[baseline]["ndcg@10"]
    assert metrics["model"]["recall@10"] >= 0.8 * metrics["oracle"]["recall@10"]
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size < 4 * 2**20


def test_training_is_bit_identical(tmp_path: Path) -> None:
    shas = []
    for run in ("a", "b"):
        simulate_store(tmp_path / run / "data", seed=7, customers=300, days=40, skus=300)
        m = train_model(tmp_path / run / "data", tmp_path / run / "model", evaluate=False)
        shas.append((m["model_sha256"], m["history_sha256"], m["catalog_sha256"], m["created"]))
    assert shas[0] == shas[1]
    assert (tmp_path / "a" / "model" / "model.onnx").read_bytes() == (
        tmp_path / "b" / "model" / "model.onnx"
    ).read_bytes()


def _other_kernels_env() -> dict[str, str]:
    """An environment in which numpy and OpenBLAS compute with other kernels than here: the
    SIMD extensions numpy dispatches to switched off, OpenBLAS forced to an old core type
    (other blocking, other summation order) and two threads — what another CPU would do."""
    from numpy._core import _multiarray_umath as umath

    found = {name for name, on in umath.__cpu_features__.items() if on}
    dispatched = sorted(found & set(umath.__cpu_dispatch__))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    if dispatched:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(dispatched)
    if os.uname().machine in ("x86_64", "AMD64"):
        env["OPENBLAS_CORETYPE"] = "Prescott"
    return env


def test_training_needs_no_scipy_and_is_the_same_with_other_kernels(tmp_path: Path) -> None:
    """``pip install .`` brings no scipy, and arm64 brings other BLAS and SIMD kernels: train in a
    subprocess where importing scipy fails and the kernels differ, and get the same bytes."""
    simulate_store(tmp_path / "data", seed=7, customers=300, days=40, skus=300)
    here = train_model(tmp_path / "data", tmp_path / "here", evaluate=False)
    code = "import sys; sys.modules['scipy'] = None; from models.cli import main; sys.exit(main(sys.argv[1:]))"
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "model",
            "train",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "there"),
            "--quiet",
        ],
        cwd=root,
        env=_other_kernels_env(),
        check=True,
        timeout=600,
    )
    there = json.loads((tmp_path / "there" / "manifest.json").read_text())
    for key in ("model_sha256", "history_sha256", "catalog_sha256"):
        assert there[key] == here[key], key


@pytest.mark.slow
def test_default_model_rebuilds_bit_for_bit(tmp_path: Path) -> None:
    shipped = manifest()
    recipe = shipped["training"]["simulation"]
    simulate_store(
        tmp_path / "data", seed=recipe["seed"], customers=recipe["customers"], days=recipe["days"], skus=recipe["skus"]
    )
    config = TrainConfig(**shipped["training"]["config"])
    rebuilt = train_model(tmp_path / "data", tmp_path / "model", config=config, top_k=shipped["top_k"], evaluate=False)
    for key in ("model_sha256", "catalog_sha256", "history_sha256", "created", "version"):
        assert rebuilt[key] == shipped[key], key
