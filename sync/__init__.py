"""Store-and-forward sync to the CDP: outbox, sinks (HTTP batch, NATS JetStream), downlink,
quota, and the central sync job. See sync/README.md.

The gateway wires this package through :data:`CONFIG_SECTIONS`, :data:`MIGRATIONS` and
:func:`build`. Importing the package is cheap: httpx, nats-py and psycopg load only when a
sink, the downlink or the central job is used (the names below are imported on first access).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sync.config import CONFIG_SECTIONS
from sync.tables import MIGRATIONS

if TYPE_CHECKING:
    from edge.component import GatewayContext
    from sync.component import SyncComponent

_LAZY = {
    "Downlink": "sync.downlink", "DownlinkHandlers": "sync.downlink", "OffersFile": "sync.downlink",
    "DownlinkRefused": "sync.errors", "SinkAuthError": "sync.errors", "StreamMismatch": "sync.errors",
    "SyncError": "sync.errors", "TransientSinkError": "sync.errors", "HttpSink": "sync.http_sink",
    "JetStreamSink": "sync.nats_sink", "Outbox": "sync.outbox", "StillAllowed": "sync.outbox",
    "DROP_TIERS": "sync.policy", "eligible": "sync.policy", "tier_of": "sync.policy",
    "enforce_quota": "sync.quota",
}  # fmt: skip

__all__ = ["CONFIG_SECTIONS", "MIGRATIONS", "build", *sorted(_LAZY)]


def build(ctx: GatewayContext, **kwargs: Any) -> SyncComponent:
    """The sync component for the gateway (see :func:`sync.component.build`)."""
    from sync.component import build as build_component

    return build_component(ctx, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sync' has no attribute {name!r}")
