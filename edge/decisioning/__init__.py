"""Identity, consent, erasure, offers, the decision engine and uplift measurement.

The gateway wires this package through :func:`build` (a :class:`DecisioningComponent` named
``"decisioning"``), its tables through :data:`MIGRATIONS`, its configuration sections through
:data:`CONFIG_SECTIONS` and its CLI commands through :func:`edge.decisioning.cli.add_commands`.
"""

from __future__ import annotations

from edge.decisioning.component import DecisioningComponent, build
from edge.decisioning.config import CONFIG_SECTIONS
from edge.decisioning.identity import Identity, load_key, normalise
from edge.decisioning.offers import OfferCatalog, OfferFileError, load_offers
from edge.decisioning.tables import MIGRATIONS
from edge.decisioning.uplift import CampaignUplift, uplift_report

__all__ = [
    "CONFIG_SECTIONS",
    "MIGRATIONS",
    "CampaignUplift",
    "DecisioningComponent",
    "Identity",
    "OfferCatalog",
    "OfferFileError",
    "build",
    "load_key",
    "load_offers",
    "normalise",
    "uplift_report",
]
