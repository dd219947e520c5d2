"""The outbox status shown by ``GET /v1/sync/status`` and ``edge sync status``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edge.journal import Journal
from sync import tables
from sync.quota import unsent_bytes

__all__ = ["sync_status"]


def sync_status(journal: Journal, sinks: Sequence[str], quota_bytes: int) -> dict[str, Any]:
    """Blocking (SQLite); call it in a thread from async code."""
    floor, pending = unsent_bytes(journal, sinks)
    oldest = journal.oldest_after(floor)
    known = tables.sink_status(journal)
    now_ms = time.time_ns() // 1_000_000
    return {
        "sinks": {
            name: {
                "cursor": journal.cursor(name),
                "backlog": journal.backlog(name),
                **known.get(name, {}),
            }
            for name in sinks
        },
        "unsent_bytes": pending,
        "quota_bytes": quota_bytes,
        "oldest_unsent_age_s": None if oldest is None else round((now_ms - oldest) / 1000, 1),
        "drops": tables.drops(journal),
        "downlink": tables.downlink_log(journal, 10),
    }
