"""The recommender in the gateway: which model directory is in force, and its hot swap.

A component named ``model`` owns the :class:`models.runtime.ModelHolder` and is the gateway's
model slot (:class:`edge.types.ModelSlot`: swap, catalog and model versions, given to sync's
downlink and health report). Decisioning reads ``holder.current`` per decision, so a swap (a signed model update from the downlink) takes
effect on the next decision with no failed one in between; a model that fails its checks or
smoke inference is refused and the old one keeps serving. The directory in force is recorded in
``<state_dir>/models/active`` so a restart keeps the last good update.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.component import ComponentBase, GatewayContext
from edge.config import doc
from edge.heap import freeze_long_lived

__all__ = ["CONFIG_SECTIONS", "MIGRATIONS", "ModelComponent", "ModelConfig", "build"]

log = logging.getLogger(__name__)
MIGRATIONS: tuple[Any, ...] = ()


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


@dataclass(frozen=True)
class ModelConfig:
    dir: str = doc(
        "", "Recommender directory (model.onnx, manifest.json, catalog.csv); empty: the shipped default model."
    )
    intra_op_threads: int = doc(1, "ONNX Runtime threads inside one inference (1 suits a Pi core).", _positive)
    inter_op_threads: int = doc(1, "ONNX Runtime threads across graph nodes.", _positive)
    max_basket: int = doc(64, "Basket items passed to the model; longer baskets keep the latest.", _positive)
    max_history: int = doc(128, "Personal history items passed to the model.", _positive)
    prepack: bool = doc(
        True,
        "Let ONNX Runtime keep a packed copy of the scoring table: ≈ 400 bytes per SKU of RAM (19 MiB at 50,000 SKUs) for micro-batches ≈ 3× faster; false for the tightest memory.",
    )


CONFIG_SECTIONS: dict[str, type] = {"model": ModelConfig}


class ModelComponent(ComponentBase):
    name = "model"

    def __init__(self, ctx: GatewayContext) -> None:
        from models import DEFAULT_MODEL_DIR
        from models.runtime import ModelHolder

        cfg: ModelConfig = ctx.config.model
        self._kwargs = {"intra_op_threads": cfg.intra_op_threads, "inter_op_threads": cfg.inter_op_threads,
                        "max_basket": cfg.max_basket, "max_history": cfg.max_history,
                        "prepack": cfg.prepack}  # fmt: skip
        self._pointer = ctx.state_dir / "models" / "active"
        configured = Path(cfg.dir) if cfg.dir else Path(DEFAULT_MODEL_DIR)
        self.holder = ModelHolder(configured, **self._kwargs)
        recorded = self._recorded()
        if recorded is not None and recorded != configured:
            try:
                self.holder.swap(recorded)
            except Exception as exc:  # a bad recorded update must not stop the store
                log.error("recorded model %s refused at start (%s); serving %s", recorded, exc, configured)

    def _recorded(self) -> Path | None:
        try:
            return Path(self._pointer.read_text().strip())
        except FileNotFoundError:
            return None

    def swap(self, directory: Path) -> None:
        """Verify, load, smoke-test and swap in ``directory``; record it only once it serves."""
        self.holder.swap(Path(directory))
        freeze_long_lived(collect=False)  # the new catalog lives until the next swap
        self._pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._pointer.with_suffix(".tmp")
        tmp.write_text(f"{Path(directory).resolve()}\n")
        os.replace(tmp, self._pointer)
        log.info("model swapped to %s", directory)

    def catalog_version(self) -> str:
        """The product catalog the model in force was built for (sha256 of its catalog.csv)."""
        return str(self.holder.current.manifest["catalog_sha256"])

    def directory(self) -> Path:
        """The directory the model in force was loaded from."""
        return Path(self.holder.current.model_dir)

    def version(self) -> str | None:
        """The model in force's manifest ``version`` (None if it names none)."""
        found = self.holder.current.manifest.get("version")
        return str(found) if found else None

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {"model": lambda: self.holder.current is not None}


def build(ctx: GatewayContext) -> ModelComponent:
    return ModelComponent(ctx)
