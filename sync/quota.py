"""Bounded disk: drop the lowest-value unsent events when the outbox exceeds its quota.

Unsent bytes are the sizes of journal events past the *slowest* enabled sink's cursor. Past the
quota, events are deleted tier by tier (:data:`sync.policy.DROP_TIERS`, tier 0 first), oldest
first within a tier, until the outbox is back under ``quota_low_water × quota``. Each chunk of
deletions and its per-name counts are one transaction; a ``Sync Drops Reported`` event carrying
the not-yet-reported counts is journaled in the same transaction as the last chunk of a pass, so
the report is as durable as the drop and reaches the centre through the normal outbox once the
link is back (it is never dropped itself).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.bus import Source
from edge.events import Event
from edge.ids import uuid7
from edge.journal import Journal
from sync import tables
from sync.metrics import SyncMetrics
from sync.policy import DEFAULT_TIER, DROP_TIERS, NEVER_DROPPED

__all__ = ["DROPS_REPORTED", "QuotaResult", "enforce_quota", "unsent_bytes"]

DROPS_REPORTED = "Sync Drops Reported"
_CHUNK = 2000


@dataclass(frozen=True)
class QuotaResult:
    unsent_bytes_before: int
    dropped: dict[str, tuple[int, int]]  # event name → (events, bytes)

    @property
    def dropped_events(self) -> int:
        return sum(n for n, _ in self.dropped.values())


def unsent_bytes(journal: Journal, sinks: Sequence[str]) -> tuple[int, int]:
    """(slowest cursor, bytes of events past it) over ``sinks``."""
    floor = min((journal.cursor(s) for s in sinks), default=0)
    return floor, journal.bytes_after(floor)


def _tiers() -> list[tuple[list[str], bool]]:
    """Per drop tier, lowest first: (event names, whether the tier is those names — or, for
    the default tier, every name *not* listed anywhere)."""
    listed = sorted({n for names in DROP_TIERS.values() for n in names} | NEVER_DROPPED)
    tiers = []
    for tier in sorted(DROP_TIERS):
        if tier == DEFAULT_TIER:
            tiers.append((sorted(set(listed) - DROP_TIERS[tier]), False))
        else:
            tiers.append((sorted(DROP_TIERS[tier]), True))
    return tiers


def enforce_quota(
    journal: Journal,
    sinks: Sequence[str],
    quota_bytes: int,
    *,
    low_water: float,
    store_id: str,
    metrics: SyncMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> QuotaResult:
    """Drop lowest-value unsent events until under quota; blocking (run it in a thread)."""
    floor, pending = unsent_bytes(journal, sinks)
    dropped: dict[str, tuple[int, int]] = {}
    if quota_bytes <= 0 or pending <= quota_bytes:
        return QuotaResult(pending, dropped)
    to_free = pending - int(quota_bytes * low_water)
    freed = 0
    for names, named in _tiers():
        while freed < to_free:
            with journal.transaction() as conn:
                rows = journal.sizes_after(floor, names, named=named, limit=_CHUNK)
                chosen = []
                for seq, name, size in rows:
                    if freed >= to_free:
                        break
                    chosen.append((seq, name, size))
                    freed += size
                if not chosen:
                    break
                journal.delete_events([c[0] for c in chosen])
                counts: dict[str, tuple[int, int]] = {}
                for _, name, size in chosen:
                    n, b = counts.get(name, (0, 0))
                    counts[name] = (n + 1, b + size)
                _add_drops(conn, counts, int(clock() * 1000))
            for name, (n, b) in counts.items():
                total_n, total_b = dropped.get(name, (0, 0))
                dropped[name] = (total_n + n, total_b + b)
                if metrics is not None:
                    metrics.dropped.labels(name).inc(n)
                    metrics.dropped_bytes.labels(name).inc(b)
        if freed >= to_free:
            break
    if dropped:
        report_drops(journal, store_id, clock)
    return QuotaResult(pending, dropped)


def _add_drops(conn: sqlite3.Connection, counts: dict[str, tuple[int, int]], now_ms: int) -> None:
    tables.add_drops(conn, counts, now_ms)
    conn.executemany(
        "INSERT INTO sync_drops_unreported (event, count, bytes) VALUES (?,?,?)"
        " ON CONFLICT(event) DO UPDATE SET count = count + excluded.count,"
        " bytes = bytes + excluded.bytes",
        [(name, n, b) for name, (n, b) in counts.items()],
    )


def report_drops(journal: Journal, store_id: str, clock: Callable[[], float] = time.time) -> bool:
    """Journal one ``Sync Drops Reported`` event with the unreported counts; False if none."""
    now_ms = int(clock() * 1000)
    with journal.transaction() as conn:
        rows = conn.execute("SELECT event, count, bytes FROM sync_drops_unreported").fetchall()
        if not rows:
            return False
        drops = {name: {"count": n, "bytes": b} for name, n, b in rows}
        message_id = uuid7(now_ms)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000))
        stamp += f".{now_ms % 1000:03d}Z"
        body = {
            "type": "track",
            "event": DROPS_REPORTED,
            "messageId": message_id,
            "timestamp": stamp,
            "receivedAt": stamp,
            "storeId": store_id,
            "deviceId": "gateway",
            "channel": "gateway",
            "properties": {
                "drops": drops,
                "count": sum(n for _, n, _ in rows),
                "bytes": sum(b for _, _, b in rows),
            },
            "context": {},
        }
        event = Event(
            message_id, "track", DROPS_REPORTED, None, None, stamp, now_ms,
            Source(store_id, "gateway", "gateway"), body,
        )  # fmt: skip
        journal.record(event)
        conn.execute("DELETE FROM sync_drops_unreported")
    return True
