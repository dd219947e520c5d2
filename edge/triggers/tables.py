"""The triggers feature's tables in the journal, and the store that reads and writes them.

``trigger_firings`` — one row per firing (delivered, held out or suppressed): the exposure row
of test-and-learn. ``firing_key`` is unique (the signal instance), so a replay after a crash
never fires twice. ``user_id`` is the customer token (person-level triggers) or, for an
anonymous trigger on an identified visit, kept only so that erasure removes the row.
``trigger_promotions`` — promotions (a variant made the business rule), every version kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from edge.journal import Journal, Migration

__all__ = ["MIGRATIONS", "Firing", "FiringStore"]


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE trigger_firings (
            id INTEGER PRIMARY KEY,
            firing_key TEXT NOT NULL UNIQUE,
            decision_id TEXT NOT NULL,
            trigger_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            arm TEXT NOT NULL,            -- a variant id or "holdout"
            unit TEXT NOT NULL,
            user_id TEXT,
            visit_id TEXT,
            touchpoint TEXT NOT NULL,
            device_id TEXT,
            fired_ms INTEGER NOT NULL,
            delivered INTEGER NOT NULL,
            outcome TEXT NOT NULL,        -- delivered | holdout | no_offer | collision | no_device | no_consent
            offers TEXT NOT NULL,         -- JSON: the offers delivered
            goal TEXT NOT NULL,           -- JSON: what converts this firing
            pre_spend REAL,               -- the person's spend in the pre-period (CUPED), NULL if anonymous
            deadline_ms INTEGER NOT NULL,
            converted_ms INTEGER,
            conversion TEXT
        )"""
    )
    db.execute("CREATE INDEX trigger_firings_trigger ON trigger_firings (trigger_id, version, arm)")
    db.execute("CREATE INDEX trigger_firings_user ON trigger_firings (user_id)")
    db.execute("CREATE INDEX trigger_firings_open ON trigger_firings (deadline_ms) WHERE converted_ms IS NULL")
    db.execute(
        """CREATE TABLE trigger_promotions (
            trigger_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            variant TEXT NOT NULL,
            min_holdout REAL NOT NULL,
            promoted_ms INTEGER NOT NULL,
            PRIMARY KEY (trigger_id, version)
        )"""
    )


MIGRATIONS: tuple[Migration, ...] = (Migration("triggers-0001-firings", _v1),)


@dataclass(frozen=True)
class Firing:
    firing_key: str
    decision_id: str
    trigger_id: str
    version: int
    arm: str
    unit: str
    user_id: str | None
    visit_id: str
    touchpoint: str
    device_id: str | None
    fired_ms: int
    delivered: bool
    outcome: str
    offers: list[dict[str, Any]]
    goal: dict[str, Any]
    pre_spend: float | None
    deadline_ms: int


class FiringStore:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def write(self, rows: list[Firing], conversions: list[tuple[str, int, str]]) -> None:
        """Firings and conversions (by firing key) in one transaction; a replayed firing key is ignored."""
        if not rows and not conversions:
            return
        with self.journal.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO trigger_firings (firing_key, decision_id, trigger_id, version, arm, unit,"
                " user_id, visit_id, touchpoint, device_id, fired_ms, delivered, outcome, offers, goal, pre_spend,"
                " deadline_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        f.firing_key,
                        f.decision_id,
                        f.trigger_id,
                        f.version,
                        f.arm,
                        f.unit,
                        f.user_id,
                        f.visit_id,
                        f.touchpoint,
                        f.device_id,
                        f.fired_ms,
                        int(f.delivered),
                        f.outcome,
                        json.dumps(f.offers),
                        json.dumps(f.goal),
                        f.pre_spend,
                        f.deadline_ms,
                    )
                    for f in rows
                ],
            )
            conn.executemany(
                "UPDATE trigger_firings SET converted_ms = ?, conversion = ? WHERE firing_key = ? AND converted_ms IS NULL",
                [(at, how, key) for key, at, how in conversions],
            )

    def known(self, firing_key: str) -> bool:
        with self.journal.connection() as conn:
            return (
                conn.execute("SELECT 1 FROM trigger_firings WHERE firing_key = ?", (firing_key,)).fetchone() is not None
            )

    def open_firings(self, now_ms: int) -> Iterator[tuple[str, str, str, str, int, int, dict[str, Any]]]:
        """(firing key, decision id, unit, visit, fired, deadline, goal) of firings still inside their window."""
        with self.journal.connection() as conn:
            rows = conn.execute(
                "SELECT firing_key, decision_id, unit, visit_id, fired_ms, deadline_ms, goal FROM trigger_firings"
                " WHERE converted_ms IS NULL AND deadline_ms > ?",
                (now_ms,),
            ).fetchall()
        for r in rows:
            yield r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])

    def since(self, from_ms: int) -> list[tuple[str, str, str, str | None, str, int, str]]:
        """(trigger id, unit, visit, device, touchpoint, fired ms, offers JSON) fired since ``from_ms``
        (the contact ledger's rebuild)."""
        with self.journal.connection() as conn:
            return conn.execute(
                "SELECT trigger_id, unit, visit_id, device_id, touchpoint, fired_ms, offers FROM trigger_firings"
                " WHERE fired_ms >= ? AND outcome IN ('delivered', 'holdout') ORDER BY fired_ms",
                (from_ms,),
            ).fetchall()

    def arm_counts(self, trigger_id: str, version: int) -> dict[str, tuple[int, int]]:
        """Per arm: (firings, conversions) — Thompson sampling's posterior."""
        with self.journal.connection() as conn:
            rows = conn.execute(
                "SELECT arm, COUNT(*), COUNT(converted_ms) FROM trigger_firings WHERE trigger_id = ? AND version = ?"
                " AND outcome IN ('delivered', 'holdout', 'no_offer') GROUP BY arm",
                (trigger_id, version),
            ).fetchall()
        return {arm: (int(n), int(c)) for arm, n, c in rows}

    def rows(self) -> list[tuple[Any, ...]]:
        with self.journal.connection() as conn:
            return conn.execute(
                "SELECT trigger_id, version, arm, delivered, outcome, converted_ms IS NOT NULL, pre_spend"
                " FROM trigger_firings ORDER BY trigger_id, version, id"
            ).fetchall()

    def promote(self, trigger_id: str, version: int, variant: str, min_holdout: float, at_ms: int) -> None:
        with self.journal.connection() as conn:
            conn.execute(
                "INSERT INTO trigger_promotions (trigger_id, version, variant, min_holdout, promoted_ms)"
                " VALUES (?,?,?,?,?) ON CONFLICT (trigger_id, version) DO UPDATE SET variant = excluded.variant,"
                " min_holdout = excluded.min_holdout, promoted_ms = excluded.promoted_ms",
                (trigger_id, version, variant, min_holdout, at_ms),
            )

    def promotions(self) -> dict[tuple[str, int], tuple[str, float, int]]:
        with self.journal.connection() as conn:
            rows = conn.execute(
                "SELECT trigger_id, version, variant, min_holdout, promoted_ms FROM trigger_promotions"
            ).fetchall()
        return {(t, int(v)): (var, float(h), int(ms)) for t, v, var, h, ms in rows}

    def prune(self, older_than_ms: int) -> int:
        """Retention: firings older than the cutoff go (they hold a pseudonymous unit)."""
        with self.journal.connection() as conn:
            return conn.execute("DELETE FROM trigger_firings WHERE fired_ms < ?", (older_than_ms,)).rowcount

    def erase(self, user_id: str) -> int:
        with self.journal.connection() as conn:
            return conn.execute(
                "DELETE FROM trigger_firings WHERE user_id = ? OR unit = ?", (user_id, f"p:{user_id}")
            ).rowcount
