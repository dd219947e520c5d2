"""The decisioning tables, in the journal's SQLite file (so erasure and backups see one file)."""

from __future__ import annotations

import sqlite_utils

from edge.journal import Migration, add_dead_letter_subjects, index_events, never_reuse_seqs

__all__ = ["MIGRATIONS"]


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE consent (
            user_id TEXT NOT NULL, purpose TEXT NOT NULL, granted INTEGER NOT NULL,
            source TEXT NOT NULL, notice_version TEXT NOT NULL, updated_ms INTEGER NOT NULL,
            PRIMARY KEY (user_id, purpose))"""
    )
    # A keyed digest of each erased token: the token itself must not stay behind.
    db.execute("CREATE TABLE suppressions (digest TEXT PRIMARY KEY, erased_ms INTEGER NOT NULL)")
    db.execute(
        """CREATE TABLE erasures (
            request_id TEXT PRIMARY KEY, erased_ms INTEGER NOT NULL, removed INTEGER NOT NULL,
            confirmed_ms INTEGER)"""
    )
    db.execute(
        """CREATE TABLE profiles (
            user_id TEXT PRIMARY KEY, updated_ms INTEGER NOT NULL, visits INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL, last_visit_ms INTEGER NOT NULL,
            items TEXT NOT NULL, categories TEXT NOT NULL, purchases TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE exposures (
            decision_id TEXT NOT NULL, offer_id TEXT NOT NULL, experiment TEXT NOT NULL,
            arm TEXT NOT NULL, unit_key TEXT NOT NULL, person_key TEXT, visit_key TEXT,
            user_id TEXT, anonymous_id TEXT, device_id TEXT NOT NULL, channel TEXT NOT NULL,
            sku TEXT, category TEXT, ms INTEGER NOT NULL, day TEXT NOT NULL,
            viewed_ms INTEGER, clicked_ms INTEGER,
            PRIMARY KEY (decision_id, offer_id))"""
    )
    db.execute("CREATE INDEX exposures_user ON exposures (user_id, ms)")
    db.execute("CREATE INDEX exposures_anon ON exposures (anonymous_id, ms)")
    db.execute("CREATE INDEX exposures_day ON exposures (day)")
    db.execute(
        """CREATE TABLE redemptions (
            decision_id TEXT NOT NULL, offer_id TEXT NOT NULL, experiment TEXT NOT NULL,
            arm TEXT NOT NULL, unit_key TEXT NOT NULL, user_id TEXT, anonymous_id TEXT,
            order_id TEXT, sku TEXT NOT NULL, quantity REAL NOT NULL, revenue REAL NOT NULL,
            ms INTEGER NOT NULL, PRIMARY KEY (decision_id, offer_id))"""
    )
    db.execute("CREATE INDEX redemptions_user ON redemptions (user_id)")


def _v2(db: sqlite_utils.Database) -> None:
    # consent is an ordered log: updated_ms is the event time of the choice, message_id the
    # Consent Updated event that made it (the tie-break, and what an export can show)
    db.execute("ALTER TABLE consent ADD COLUMN message_id TEXT NOT NULL DEFAULT ''")
    # linked visits (an erasure finds the anonymous events of visits the person identified in)
    index_events(db, "events_anonymous", ["anonymous_id"])
    db.execute("CREATE INDEX exposures_ms ON exposures (ms)")
    db.execute("CREATE INDEX redemptions_ms ON redemptions (ms)")
    add_dead_letter_subjects(db)


def _v3(db: sqlite_utils.Database) -> None:
    never_reuse_seqs(db)  # an erasure may delete the newest events: see the journal


MIGRATIONS: tuple[Migration, ...] = (
    Migration("decisioning-0001-tables", _v1),
    Migration("decisioning-0002-ordered-consent", _v2),
    Migration("decisioning-0003-events-seq-never-reused", _v3),
)
