"""The decisioning tables, in the journal's SQLite file (so erasure and backups see one file)."""

from __future__ import annotations

import sqlite_utils

from edge.journal import Migration

__all__ = ["MIGRATIONS"]


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE consent (
            user_id TEXT NOT NULL, purpose TEXT NOT NULL, granted INTEGER NOT NULL,
            source TEXT NOT NULL, notice_version TEXT NOT NULL, updated_ms INTEGER NOT NULL,
            PRIMARY KEY (user_id, purpose))"""
    )
    # A keyed digest of each erased token: the token itself must not stay behind.
    db.execute(
        "CREATE TABLE suppressions (digest TEXT PRIMARY KEY, erased_ms INTEGER NOT NULL)"
    )
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
    db.execute("CREATE INDEX events_anonymous ON events (anonymous_id)")
    db.execute("CREATE INDEX exposures_ms ON exposures (ms)")
    db.execute("CREATE INDEX redemptions_ms ON redemptions (ms)")
    # whom a dead letter was about, as keyed digests only (see edge.journal.Admission.subject)
    db.execute("ALTER TABLE dead_letters ADD COLUMN subject TEXT")
    db.execute("CREATE INDEX dead_letters_received ON dead_letters (received_ms)")


def _v3(db: sqlite_utils.Database) -> None:
    """``events.seq`` never reused: an erasure may delete the newest events, and SQLite would
    then hand their seqs to the next events — which the outbox, whose cursor is past them,
    would never send (the erasure confirmation first). AUTOINCREMENT keeps seqs increasing;
    the table is rebuilt once, with every index other features created on it."""
    indexes = [r[0] for r in db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")]
    table_sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()[0]
    db.execute(table_sql.replace("CREATE TABLE events", "CREATE TABLE events_v3", 1).replace(
        "seq INTEGER PRIMARY KEY", "seq INTEGER PRIMARY KEY AUTOINCREMENT", 1))
    db.execute("INSERT INTO events_v3 SELECT * FROM events")
    db.execute("DROP TABLE events")
    db.execute("ALTER TABLE events_v3 RENAME TO events")
    for sql in indexes:
        db.execute(sql)
    high = db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0),"
        " COALESCE((SELECT MAX(seq) FROM sink_cursors), 0))").fetchone()[0]
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", [high])


MIGRATIONS: tuple[Migration, ...] = (
    Migration("decisioning-0001-tables", _v1),
    Migration("decisioning-0002-ordered-consent", _v2),
    Migration("decisioning-0003-events-seq-never-reused", _v3),
)
