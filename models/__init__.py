"""The local recommender: data, simulation, training, ONNX export, evaluation, runtime.

The gateway uses :class:`Recommender` / :class:`ModelHolder` (``models.runtime``) and the CLI
hook :func:`models.cli.add_commands`. Training needs numpy only (no scipy); serving needs numpy
and onnxruntime. Nothing here imports web code, I/O adapters or ``edge``.
"""

from pathlib import Path

from .catalog import Catalog, CatalogItem, load_catalog
from .context import CTX_DIM, Context, encode_context
from .data import Dataset, load_dataset
from .errors import DataError, ModelError, ModelsError
from .runtime import ModelHolder, Recommender, Scored
from .simulate import offer_purchase_probability
from .validation import WeightedHistory

__all__ = [
    "CTX_DIM",
    "DEFAULT_MODEL_DIR",
    "Catalog",
    "CatalogItem",
    "Context",
    "DataError",
    "Dataset",
    "ModelError",
    "ModelHolder",
    "ModelsError",
    "Recommender",
    "Scored",
    "WeightedHistory",
    "encode_context",
    "load_catalog",
    "load_dataset",
    "offer_purchase_probability",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
"""The demo store's model, rebuilt by ``tests/models/test_default_model.py`` (see its recipe)."""
