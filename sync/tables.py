"""The sync package's tables in the journal file, and small typed accessors for them.

* ``sync_sinks``     per sink: last success, last error, totals (sent, dead-lettered, duplicates)
* ``sync_drops``     per event name: events and bytes dropped by the outbox quota (cumulative)
* ``sync_drops_unreported``  the part of those not yet journaled in a ``Sync Drops Reported``
* ``sync_downlink``  bounded log of downlink messages applied or refused (id, kind, outcome)
* index ``sync_events_pending`` on ``events(seq, size)`` so the quota sums unsent bytes from a
  covering index instead of reading every event body.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlite_utils

from edge.journal import Journal, Migration, index_events

__all__ = [
    "MIGRATIONS",
    "drops",
    "downlink_log",
    "record_downlink",
    "record_failure",
    "record_success",
    "sink_status",
]

DOWNLINK_LOG_MAX = 1000


def _sync_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE sync_sinks (
            sink TEXT PRIMARY KEY,
            last_success_ms INTEGER,
            last_error TEXT,
            last_error_ms INTEGER,
            sent INTEGER NOT NULL DEFAULT 0,
            dead_lettered INTEGER NOT NULL DEFAULT 0,
            duplicates INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """CREATE TABLE sync_drops (
            event TEXT PRIMARY KEY,
            count INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            last_drop_ms INTEGER NOT NULL
        )"""
    )
    db.execute(
        "CREATE TABLE sync_drops_unreported (event TEXT PRIMARY KEY, count INTEGER NOT NULL, bytes INTEGER NOT NULL)"
    )
    db.execute(
        """CREATE TABLE sync_downlink (
            id INTEGER PRIMARY KEY,
            received_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    index_events(db, "sync_events_pending", ["seq", "size"])


MIGRATIONS: tuple[Migration, ...] = (Migration("sync-0001-outbox", _sync_v1),)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def record_success(conn: sqlite3.Connection, sink: str, sent: int, duplicates: int, dead: int) -> None:
    """Inside the caller's transaction (the one that moves the cursor)."""
    conn.execute(
        "INSERT INTO sync_sinks (sink, last_success_ms, sent, duplicates, dead_lettered)"
        " VALUES (?,?,?,?,?) ON CONFLICT(sink) DO UPDATE SET"
        " last_success_ms = excluded.last_success_ms, sent = sent + excluded.sent,"
        " duplicates = duplicates + excluded.duplicates,"
        " dead_lettered = dead_lettered + excluded.dead_lettered",
        (sink, _now_ms(), sent, duplicates, dead),
    )


def record_failure(journal: Journal, sink: str, error: str) -> None:
    with journal.connection() as conn:
        conn.execute(
            "INSERT INTO sync_sinks (sink, last_error, last_error_ms) VALUES (?,?,?)"
            " ON CONFLICT(sink) DO UPDATE SET last_error = excluded.last_error,"
            " last_error_ms = excluded.last_error_ms",
            (sink, error[:500], _now_ms()),
        )


def sink_status(journal: Journal) -> dict[str, dict[str, Any]]:
    with journal.connection() as conn:
        cur = conn.execute("SELECT * FROM sync_sinks ORDER BY sink")
        names = [c[0] for c in cur.description]
        return {row[0]: dict(zip(names[1:], row[1:], strict=True)) for row in cur.fetchall()}


def add_drops(conn: sqlite3.Connection, counts: dict[str, tuple[int, int]], now_ms: int) -> None:
    """Inside the caller's transaction: add {event name: (count, bytes)} to the drop totals."""
    conn.executemany(
        "INSERT INTO sync_drops (event, count, bytes, last_drop_ms) VALUES (?,?,?,?)"
        " ON CONFLICT(event) DO UPDATE SET count = count + excluded.count,"
        " bytes = bytes + excluded.bytes, last_drop_ms = excluded.last_drop_ms",
        [(name, n, b, now_ms) for name, (n, b) in counts.items()],
    )


def drops(journal: Journal) -> dict[str, dict[str, int]]:
    with journal.connection() as conn:
        rows = conn.execute("SELECT event, count, bytes FROM sync_drops ORDER BY event").fetchall()
    return {r[0]: {"count": r[1], "bytes": r[2]} for r in rows}


def record_downlink(journal: Journal, kind: str, ref: str, outcome: str, detail: str) -> None:
    with journal.connection() as conn:
        conn.execute(
            "INSERT INTO sync_downlink (received_ms, kind, ref, outcome, detail) VALUES (?,?,?,?,?)",
            (_now_ms(), kind[:40], ref[:200], outcome, detail[:500]),
        )
        conn.execute(
            "DELETE FROM sync_downlink WHERE id <= (SELECT MAX(id) FROM sync_downlink) - ?",
            (DOWNLINK_LOG_MAX,),
        )


def downlink_log(journal: Journal, limit: int = 50) -> list[dict[str, Any]]:
    with journal.connection() as conn:
        cur = conn.execute(
            "SELECT received_ms, kind, ref, outcome, detail FROM sync_downlink ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
