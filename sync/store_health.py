"""What a gateway reports about itself on ``cdp.status.{storeId}`` (:class:`sync.health.StoreHealth`).

Read from what the gateway already keeps: the model in force (the model slot's manifest
``version``), the offers file's version (the decisioning feature's offers file), its
``edge_decisions_total`` and ``edge_decision_seconds`` (p99 from the histogram's buckets, an
upper bound), ``edge_decision_failures_total`` as ``errors`` (null when decisioning is not
enabled), the slowest sink's backlog, and the latest downlink message refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from edge.journal import Journal
from edge.types import ModelSlot
from sync import tables
from sync.health import StoreHealth

__all__ = ["decision_stats", "store_health"]


def decision_stats(registry: CollectorRegistry) -> tuple[int, int | None, float | None]:
    """(decisions answered, decisions failed or None, p99 in ms or None) from the decisioning
    metrics."""
    decisions, errors = 0, None
    buckets: list[tuple[float, float]] = []
    for metric in registry.collect():
        if metric.name == "edge_decisions":
            decisions = int(sum(s.value for s in metric.samples if s.name.endswith("_total")))
        elif metric.name == "edge_decision_failures":
            errors = int(sum(s.value for s in metric.samples if s.name.endswith("_total")))
        elif metric.name == "edge_decision_seconds":
            buckets = sorted((float(s.labels["le"]), s.value) for s in metric.samples
                             if s.name.endswith("_bucket"))  # fmt: skip
    if not buckets or buckets[-1][1] == 0:
        return decisions, errors, None
    total = buckets[-1][1]
    bound = next(le for le, count in buckets if count >= 0.99 * total)
    return decisions, errors, None if bound == float("inf") else bound * 1000


def store_health(
    store_id: str, journal: Journal, registry: CollectorRegistry, sinks: Sequence[str], *,
    model: ModelSlot | None = None, offers: str | None = None,
) -> StoreHealth:  # fmt: skip
    """Blocking (SQLite): call it in a thread. ``model`` and ``offers`` (the offer catalog's
    version in force) are None when the gateway runs without the model or decisioning."""
    version = model.version() if model is not None else None
    decisions, errors, p99 = decision_stats(registry)
    backlog = max((journal.backlog(s) for s in sinks), default=0)
    refused = [r for r in tables.downlink_log(journal, 20) if r["outcome"] == "refused"]
    return StoreHealth(
        store_id, time.time(), str(version) if version else None, offers, decisions, errors, p99,
        backlog, refused[0]["ref"] if refused else None,
        str(refused[0]["detail"])[:256] if refused else None,
    )  # fmt: skip
