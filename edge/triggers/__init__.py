"""Signals → triggers: a trigger library evaluated on the live event stream, pushing offers to
the touch points, measured against a holdout and test-and-learned (see ``TRIGGERS.md``).

The gateway wires it as the feature ``edge.triggers`` (:func:`build`, after decisioning); its
tables are :data:`MIGRATIONS`, its configuration :data:`CONFIG_SECTIONS` and its commands
:func:`edge.triggers.cli.add_commands`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge.triggers.config import CONFIG_SECTIONS
from edge.triggers.tables import MIGRATIONS

if TYPE_CHECKING:
    from edge.component import GatewayContext
    from edge.triggers.component import TriggersComponent

__all__ = ["CONFIG_SECTIONS", "DEMO_TRIGGERS", "MIGRATIONS", "build"]

DEMO_TRIGGERS = Path(__file__).with_name("demo_triggers.toml")


def build(ctx: GatewayContext) -> TriggersComponent:
    from edge.triggers.component import build as build_component

    return build_component(ctx)
