"""The central job's own Prometheus metrics, served on ``central.metrics_port`` (127.0.0.1).

Per store: events loaded (its load rate is ``rate(central_events_loaded_total[1m])``) and the
load lag — seconds between the gateway receiving the latest loaded event and its commit here.
For the worker: the shared consumer's backlog, batches, rejects and events skipped because the
person asked for erasure.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["CentralMetrics"]


class CentralMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.loaded = Counter("central_events_loaded", "Events committed to PostgreSQL", ["store"], registry=r)
        self.lag = Gauge(
            "central_load_lag_seconds",
            "receivedAt of the store's latest loaded event to its commit here", ["store"],
            registry=r,
        )  # fmt: skip
        self.lag_all = Histogram(
            "central_event_lag_seconds", "receivedAt to commit, every loaded event",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600), registry=r,
        )  # fmt: skip
        self.pending = Gauge("central_consumer_pending", "Messages not yet acked on the shared consumer", registry=r)
        self._children: dict[str, tuple[Any, Any]] = {}
        self.batches = Counter("central_batches", "Batches committed by this worker", registry=r)
        self.rejected = Counter(
            "central_events_rejected",
            "Messages refused (unparseable, expired)",
            ["reason"],
            registry=r,
        )
        self.erased = Counter(
            "central_events_erased_in_flight",
            "Messages of a person with an erasure request, deleted instead of loaded", registry=r,
        )  # fmt: skip

    def observe_batch(self, received: Iterable[tuple[str, float | None]]) -> None:
        """(store, receivedAt epoch seconds) of each event just committed."""
        now = time.time()
        latest: dict[str, float] = {}
        counts: dict[str, int] = {}
        observe = self.lag_all.observe
        for store, at in received:
            counts[store] = counts.get(store, 0) + 1
            if at is not None:
                observe(max(0.0, now - at))
                if at > latest.get(store, 0.0):
                    latest[store] = at
        for store, count in counts.items():  # one labelled child per store, not per event
            self._child(store)[0].inc(count)
        for store, at in latest.items():
            self._child(store)[1].set(max(0.0, now - at))
        self.batches.inc()

    def _child(self, store: str) -> tuple[Any, Any]:
        """The store's (loaded, lag) children, looked up once (a fleet is hundreds of stores
        in every batch)."""
        child = self._children.get(store)
        if child is None:
            child = self._children[store] = (self.loaded.labels(store), self.lag.labels(store))
        return child

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
