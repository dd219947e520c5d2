"""Prometheus metrics of the sync package, registered in the gateway's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["SyncMetrics"]


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sent = Counter("sync_events_sent", "Events confirmed by a sink", ["sink"], registry=r)
        self.skipped = Counter(
            "sync_events_skipped",
            "Events not sent for lack of consent",
            ["sink", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "sync_events_dead_lettered",
            "Events a sink refused for good",
            ["sink", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "sync_events_duplicate", "Events a sink reported it already had", ["sink"], registry=r
        )
        self.failures = Counter("sync_send_failures", "Batches that failed transiently", ["sink"], registry=r)
        self.dropped = Counter(
            "sync_events_dropped",
            "Unsent events dropped by the outbox quota",
            ["event"],
            registry=r,
        )
        self.dropped_bytes = Counter(
            "sync_bytes_dropped",
            "Bytes of unsent events dropped by the outbox quota",
            ["event"],
            registry=r,
        )
        self.cursor_lag = Gauge(
            "sync_cursor_lag", "Journal sequence numbers past a sink's cursor", ["sink"], registry=r
        )
        self.downlink = Counter(
            "sync_downlink_messages",
            "Downlink messages by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
