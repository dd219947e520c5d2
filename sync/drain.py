"""Drain every enabled sink once (``edge sync drain``, the benchmark): send, then return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.journal import Journal
from sync.http_sink import HttpSink
from sync.metrics import SyncMetrics
from sync.nats_sink import JetStreamSink
from sync.outbox import BatchOutcome, Outbox, StillAllowed

__all__ = ["drain_all"]


async def drain_all(
    journal: Journal,
    config: Any,
    still_allowed: StillAllowed,
    *,
    store_id: str | None = None,
    progress: Callable[[int], object] | None = None,
    is_erased: Callable[[str], bool] | None = None,
) -> dict[str, int]:
    """Drain the enabled sinks one after the other, retrying with backoff; returns sent counts."""
    store = store_id or config.store.id
    outbox = Outbox(journal, config.sync, still_allowed, SyncMetrics(), is_erased=is_erased)
    factories: dict[str, Callable[[], Any]] = {}
    if config.sync_http.enabled:
        factories["http"] = lambda: HttpSink(config.sync_http)
    if config.sync_nats.enabled:
        factories["nats"] = lambda: JetStreamSink(config.sync_nats, store)
    sent: dict[str, int] = {}
    for name, factory in factories.items():
        counted = {"sent": 0}

        def on_batch(outcome: BatchOutcome, counted: dict[str, int] = counted) -> None:
            counted["sent"] += outcome.sent
            if progress is not None:
                progress(outcome.read)

        await outbox.run_sink(name, factory, until_caught_up=True, progress=on_batch,
                              auth_retry_s=config.sync_http.auth_retry_s)  # fmt: skip
        sent[name] = counted["sent"]
    return sent
