"""Identity, consent, erasure, offers, the decision engine and uplift measurement.

The gateway (:func:`edge.gateway.build_features`) wires this package's
:class:`DecisioningComponent` (named ``"decisioning"``), its tables through :data:`MIGRATIONS`, its configuration sections through
:data:`CONFIG_SECTIONS` and its CLI commands through :func:`edge.decisioning.cli.add_commands`.
Importing the package is cheap: the engine (and ONNX Runtime) load when :func:`build` runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.decisioning.config import CONFIG_SECTIONS
from edge.decisioning.tables import MIGRATIONS

if TYPE_CHECKING:
    from edge.component import GatewayContext
    from edge.decisioning.component import DecisioningComponent
    from edge.decisioning.engine import Recommending

_LAZY = {
    "DecisioningComponent": "edge.decisioning.component", "Identity": "edge.decisioning.identity",
    "load_key": "edge.decisioning.identity", "normalise": "edge.decisioning.identity",
    "OfferCatalog": "edge.decisioning.offers", "OfferFileError": "edge.decisioning.offers",
    "load_offers": "edge.decisioning.offers", "CampaignUplift": "edge.decisioning.uplift",
    "uplift_report": "edge.decisioning.uplift",
}  # fmt: skip

__all__ = ["CONFIG_SECTIONS", "MIGRATIONS", "build", *sorted(_LAZY)]


def build(ctx: GatewayContext, recommender: Callable[[], Recommending] | None = None) -> DecisioningComponent:
    """The decisioning component (see :func:`edge.decisioning.component.build`)."""
    from edge.decisioning.component import build as build_component

    return build_component(ctx, recommender)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge.decisioning' has no attribute {name!r}")
