"""Prometheus metrics of the ingest path, in a registry owned by one gateway instance."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["IngestMetrics"]


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.accepted = Counter(
            "edge_events_accepted",
            "Events newly committed to the journal",
            ["transport"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "edge_events_duplicate",
            "Events whose messageId was already journaled",
            ["transport"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "edge_events_rejected",
            "Inputs refused, by reason",
            ["transport", "reason"],
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "edge_journal_commit_seconds",
            "Time of one group commit",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.commit_events = Histogram(
            "edge_journal_commit_events",
            "Events per group commit",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=self.registry,
        )
        self.commit_failures = Counter(
            "edge_journal_commit_failures",
            "Group commits that failed (nothing was acknowledged)",
            registry=self.registry,
        )
        self.writer_crashes = Counter(
            "edge_journal_writer_crashes",
            "Batches the journal writer failed on a fault outside the commit (nothing of them acknowledged; the writer went on)",
            registry=self.registry,
        )
        self.writer_failures = Counter(
            "edge_journal_writer_failures",
            "Derived-row writers that raised inside a commit (their rows rolled back, events kept)",
            registry=self.registry,
        )
        self.isolated = Counter(
            "edge_journal_isolated",
            "Events set aside (refused, dead-lettered) because the journal could not store them;"
            " the rest of their group commit was stored",
            registry=self.registry,
        )
        self.identifiers_masked = Counter(
            "edge_identifiers_masked",
            "Raw identifiers found outside identifier fields and replaced by a marker, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.traits_dropped = Counter(
            "edge_traits_dropped",
            "Personal traits dropped at ingest (not in guard.trait_allow)",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "edge_ingest_queue_depth", "Inputs waiting for the journal writer", registry=self.registry
        )

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)
