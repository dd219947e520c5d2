"""Retention for everything personal: ``journal.retention_days`` (default 395) for every table.

:func:`prune` deletes, in one transaction, every row of
:data:`~edge.decisioning.personal.PERSONAL_TABLES` dated before the cutoff by its time column
(events and dead letters by arrival, consent by when the choice was made, profiles by their last
update, exposures and redemptions by when they happened, app keys by registration). A profile
that is kept loses the purchases and items older than the cutoff; its category counts are
rebuilt from the items kept (or dropped, when no catalog is at hand to rebuild them). A profile
whose ``personalization`` grant was pruned goes too: a lapsed grant is a withdrawal. The WAL is
then checkpointed, so the pruned rows leave it too. The running gateway prunes at start and
every hour; ``edge retention prune`` asks it (or, with no gateway running, prunes the file).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable

from edge.decisioning.personal import existing
from edge.journal import Journal

__all__ = ["DAY_MS", "cutoff_ms", "prune"]

DAY_MS = 86_400_000


def cutoff_ms(now_s: float, retention_days: int) -> int:
    return int(now_s * 1000) - retention_days * DAY_MS


def prune(
    journal: Journal, older_than_ms: int, category_of: Callable[[str], str | None] | None = None
) -> tuple[dict[str, int], set[str]]:
    """Prune every personal table; returns (rows removed per table, profiles trimmed)."""
    removed: dict[str, int] = {}
    with journal.transaction() as conn:
        trimmed = _trim_profiles(conn, older_than_ms, category_of)
        tables = existing(conn)
        for table in tables:
            removed[table.table] = conn.execute(
                f"DELETE FROM {table.table} WHERE {table.time_column} < ?", (older_than_ms,)
            ).rowcount
        if {"profiles", "consent"} <= {t.table for t in tables}:  # a lapsed grant is a withdrawal
            removed["profiles"] += conn.execute(
                "DELETE FROM profiles WHERE user_id NOT IN (SELECT user_id FROM consent"
                " WHERE purpose = 'personalization' AND granted = 1)"
            ).rowcount
    with journal.connection() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return removed, trimmed


def _trim_profiles(
    conn: sqlite3.Connection, older_than_ms: int, category_of: Callable[[str], str | None] | None
) -> set[str]:
    if not any(t.table == "profiles" for t in existing(conn)):
        return set()
    trimmed: set[str] = set()
    rows = conn.execute(
        "SELECT user_id, items, purchases FROM profiles WHERE updated_ms >= ?", (older_than_ms,)
    ).fetchall()
    for user_id, items_text, purchases_text in rows:
        items: dict[str, list[int]] = json.loads(items_text)
        purchases: list[list[object]] = json.loads(purchases_text)
        kept_items = {sku: v for sku, v in items.items() if v[0] >= older_than_ms}
        kept_purchases = [p for p in purchases if int(p[1]) >= older_than_ms]  # type: ignore[call-overload]
        if len(kept_items) == len(items) and len(kept_purchases) == len(purchases):
            continue
        categories: Counter[str] = Counter()
        if category_of is not None:
            for sku, (_last, count) in kept_items.items():
                category = category_of(sku)
                if category:
                    categories[category] += count
        conn.execute(
            "UPDATE profiles SET items = ?, purchases = ?, categories = ? WHERE user_id = ?",
            (json.dumps(kept_items, separators=(",", ":")), json.dumps(kept_purchases, separators=(",", ":")),
             json.dumps(dict(categories), separators=(",", ":")), user_id),
        )  # fmt: skip
        trimmed.add(user_id)
    return trimmed
