"""The journal: every accepted event, durably, exactly once, on SQLite.

* WAL mode, ``synchronous=FULL`` by default so a commit survives a power cut, ``secure_delete``
  on so erased rows leave no trace in free pages.
* ``messageId`` is UNIQUE: a redelivered event is stored once (``commit`` reports duplicates).
* Group commit: :meth:`Journal.commit` writes a whole batch in one transaction; the ingest
  writer hands it whatever queued up while the previous commit was flushing.
* A bounded dead-letter table keeps what was refused, with the reason and a scrubbed excerpt —
  or only reason, time and size when it was about a suppressed (erased) person.
* An :class:`Admission` (the decisioning feature's suppression and consent rule) runs *inside*
  every commit's transaction, before the insert: whatever path an event took, it is refused
  there once its person is suppressed, and a consent change applies only when its event is
  stored for the first time.
* A cursor/confirm API for outbox sinks: :meth:`read_after` returns events past a sink's
  cursor, :meth:`confirm` moves the cursor only forward, only after the sink confirmed.
* Schema changes are recorded migrations (sqlite-utils for schema work; the hot path uses the
  raw connection, see ``PERFORMANCE.md``). Other packages register their own tables with
  :class:`Migration` so erasure and backups see one file.

Writes go through one connection guarded by a lock. Reads use a connection per thread
(:meth:`Journal.reader`), so a bearer-token lookup or an outbox read never waits behind a group
commit's fsync; WAL lets them, and other processes (``edge journal stats``, ``edge sync
drain``), read alongside the writer.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import sqlite_utils

from edge.errors import JournalError
from edge.events import Event
from edge.redact import scrub, scrub_bytes

__all__ = [
    "Admission",
    "CommitResult",
    "DeadLetter",
    "Journal",
    "JournalRecord",
    "Migration",
    "CORE_MIGRATIONS",
    "INSERT_EVENT",
    "READER_CACHE_KIB",
    "add_dead_letter_subjects",
    "index_events",
    "never_reuse_seqs",
]

# the page cache of each read connection and of the checkpointer, in KiB as SQLite's negative
# cache_size means (its default is 2,000): a box's readers are one per thread that queries, and
# their lookups (an index probe, a cursor's next page) need little; the writer keeps the default
READER_CACHE_KIB = -512


@dataclass(frozen=True)
class Migration:
    """A named, recorded schema step. ``apply`` gets a sqlite-utils Database."""

    name: str
    apply: Callable[[sqlite_utils.Database], None]


@dataclass(frozen=True)
class DeadLetter:
    source: str
    reason: str
    detail: str
    payload: bytes  # only its size and sha256 are kept
    excerpt: str | None = None  # already guarded (edge.guard); None: scrubbed from the payload
    #: the userId/anonymousId the refused input named, if any: kept only as keyed digests, so
    #: an erasure can find (and empty) the person's dead letters
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommitResult:
    inserted: tuple[bool, ...]  # per event: True if new, False if a duplicate or refused
    dead_lettered: int
    writer_failures: int = 0
    refused: tuple[str | None, ...] = ()  # per event: the admission's refusal reason, or None

    @property
    def accepted(self) -> int:
        return sum(self.inserted)

    @property
    def duplicates(self) -> int:
        return len(self.inserted) - self.accepted - sum(r is not None for r in self.refused)


class Admission(Protocol):
    """Runs inside :meth:`Journal.commit`'s transaction, under the journal lock."""

    def admit(self, conn: sqlite3.Connection, events: Sequence[Event]) -> Sequence[str | None]:
        """Per event: None to store it, or the reason it is refused. May change ``event.body``
        (before the row is built) and write rows on ``conn``."""
        ...

    def subject(self, subject_id: str) -> tuple[str, bool]:
        """A dead letter's subject (userId/anonymousId) → (keyed digest, suppressed?)."""
        ...

    def settle(self, committed: bool) -> None:
        """After the transaction, still under the journal lock: committed, or rolled back
        (undo the in-memory changes ``admit`` made)."""
        ...

    def after_commit(self) -> None:
        """After a successful commit, the journal lock released (take other locks here)."""
        ...


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    message_id: str
    event: str | None
    user_id: str | None
    received_ms: int
    sync_allowed: bool
    body: str  # the envelope as stored JSON text


def _core_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            event TEXT,
            user_id TEXT,
            anonymous_id TEXT,
            device_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            received_ms INTEGER NOT NULL,
            sync_allowed INTEGER NOT NULL,
            size INTEGER NOT NULL,
            body TEXT NOT NULL
        )"""
    )
    db["events"].create_index(["user_id"])  # type: ignore[union-attr]
    db["events"].create_index(["received_ms"])  # type: ignore[union-attr]
    db["dead_letters"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "received_ms": int,
            "source": str,
            "reason": str,
            "detail": str,
            "size": int,
            "sha256": str,
            "excerpt": str,
        },
        pk="id",
    )
    db["sink_cursors"].create({"sink": str, "seq": int, "updated_ms": int}, pk="sink")  # type: ignore[union-attr]


CORE_MIGRATIONS: tuple[Migration, ...] = (Migration("core-0001-events", _core_v1),)


# -- schema steps features' migrations take on the journal's tables -----------------------------
# Recorded under the feature's migration name (they ship with the feature), written here so
# that every statement on ``events``, ``dead_letters`` and ``sink_cursors`` lives in this module.


def index_events(db: sqlite_utils.Database, name: str, columns: Sequence[str]) -> None:
    """An index on ``events`` a feature's queries need (e.g. ``events_anonymous``)."""
    db.execute(f"CREATE INDEX {name} ON events ({', '.join(columns)})")


def add_dead_letter_subjects(db: sqlite_utils.Database) -> None:
    """Whom a dead letter was about, as keyed digests only (see :meth:`Admission.subject`),
    and the index retention prunes dead letters by."""
    db.execute("ALTER TABLE dead_letters ADD COLUMN subject TEXT")
    db.execute("CREATE INDEX dead_letters_received ON dead_letters (received_ms)")


def never_reuse_seqs(db: sqlite_utils.Database) -> None:
    """``events.seq`` never reused: an erasure may delete the newest events, and SQLite would
    then hand their seqs to the next events — which the outbox, whose cursor is past them,
    would never send. AUTOINCREMENT keeps seqs increasing; the table is rebuilt once, with every
    index other features created on it, and the sequence starts past every cursor."""
    indexes = [
        r[0]
        for r in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
        )
    ]
    table_sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()[0]
    db.execute(
        table_sql.replace("CREATE TABLE events", "CREATE TABLE events_v3", 1).replace(
            "seq INTEGER PRIMARY KEY", "seq INTEGER PRIMARY KEY AUTOINCREMENT", 1
        )
    )
    db.execute("INSERT INTO events_v3 SELECT * FROM events")
    db.execute("DROP TABLE events")
    db.execute("ALTER TABLE events_v3 RENAME TO events")
    for sql in indexes:
        db.execute(sql)
    high = db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0), COALESCE((SELECT MAX(seq) FROM sink_cursors), 0))"
    ).fetchone()[0]
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", [high])


log = logging.getLogger(__name__)

#: Derives rows from newly committed events inside the commit's transaction (see
#: :meth:`Journal.commit`); gets the journal's connection and the new events. Keep it fast.
CommitWriter = Callable[[sqlite3.Connection, Sequence[Event]], None]


def _run_writer(conn: sqlite3.Connection, writer: CommitWriter, events: Sequence[Event]) -> bool:
    conn.execute("SAVEPOINT commit_writer")
    try:
        writer(conn, events)
    except Exception:
        conn.execute("ROLLBACK TO commit_writer")
        conn.execute("RELEASE commit_writer")
        log.exception("commit writer %r failed; its rows are rolled back, the events kept", writer)
        return False
    conn.execute("RELEASE commit_writer")
    return True


INSERT_EVENT = (
    "INSERT INTO events (message_id, type, event, user_id, anonymous_id, device_id, channel,"
    " timestamp, received_ms, sync_allowed, size, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(message_id) DO NOTHING"
)


class Journal:
    """The durable event journal. Thread-safe; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Literal["full", "normal"] = "full",
        dead_letter_max: int = 10_000,
        migrations: Sequence[Migration] = (),
    ) -> None:
        self.path = Path(path)
        self.dead_letter_max = dead_letter_max
        self._admission: Admission | None = None
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._savepoints = 0  # depth of nested transaction() calls, under the lock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._migrate((*CORE_MIGRATIONS, *migrations))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        stop = getattr(self, "_checkpointer_stop", None)
        if stop is not None:
            stop.set()
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._conn.close()

    def start_checkpointer(self, interval_s: float = 1.0) -> None:
        """Move WAL checkpoints off the commit path: a background thread checkpoints
        (PASSIVE, so writers are never blocked) and the writer no longer auto-checkpoints,
        which otherwise stalls the group commit that happens to cross the threshold."""
        stop = threading.Event()
        self._checkpointer_stop = stop

        def loop() -> None:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            conn.execute(f"PRAGMA cache_size={READER_CACHE_KIB}")
            try:
                while not stop.wait(interval_s):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.warning("background checkpoint stopped: %s", exc)
            finally:
                conn.close()

        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        threading.Thread(target=loop, name="journal-checkpoint", daemon=True).start()

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (it never takes the writer's lock)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=ON")
            conn.execute(f"PRAGMA cache_size={READER_CACHE_KIB}")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The raw connection, under the journal lock, for packages that own tables in it."""
        with self._lock:
            yield self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work on the writer connection, under the journal lock.

        Transactions nest, as sqlite-utils' ``Database.atomic()`` does: the outermost one is
        ``BEGIN IMMEDIATE … COMMIT``; one opened inside it is a SAVEPOINT, so an exception
        undoes only the inner unit (and, unless caught, the outer one too as it unwinds) and
        nothing is durable before the outermost commit."""
        with self._lock:
            conn = self._conn
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return
            self._savepoints += 1
            name = f"journal_{self._savepoints}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            finally:
                self._savepoints -= 1
            conn.execute(f"RELEASE {name}")

    def admit_with(self, admission: Admission) -> Callable[[], None]:
        """Run ``admission`` inside every commit from now on; returns its undo callable."""
        self._admission = admission

        def undo() -> None:
            if self._admission is admission:
                self._admission = None

        return undo

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        db = sqlite_utils.Database(self._conn)
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
            done = {row[0] for row in self._conn.execute("SELECT name FROM _migrations")}
            for migration in migrations:
                if migration.name in done:
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    migration.apply(db)
                    self._conn.execute("INSERT INTO _migrations VALUES (?, ?)", (migration.name, _now_ms()))
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")

    def applied_migrations(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM _migrations ORDER BY rowid")]

    # -- writing ---------------------------------------------------------------------------
    def commit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[DeadLetter] = (),
        writers: Sequence[CommitWriter] = (),
    ) -> CommitResult:
        """Write ``events`` and ``dead_letters`` in one transaction (group commit).

        ``writers`` run inside that transaction with the events it inserts (duplicates left
        out), so the rows they derive (exposures, say) commit or vanish with the events — a
        crash cannot leave one without the other. Each runs in its own savepoint: one that
        raises is rolled back alone, logged and counted in ``CommitResult.writer_failures``."""
        now = _now_ms()
        admission = self._admission
        with self._lock:  # settle() sees this commit's outcome before any other commit starts
            try:
                with self.transaction() as conn:
                    refused: Sequence[str | None] = ()
                    if admission is not None and events:
                        refused = tuple(admission.admit(conn, events))
                    kept = (
                        events
                        if not any(refused)
                        else [e for e, reason in zip(events, refused, strict=True) if reason is None]
                    )
                    inserted = self._insert_events(conn, kept)
                    if kept is not events:
                        flags = iter(inserted)
                        inserted = tuple(reason is None and next(flags) for reason in refused)
                        dead_letters = [*dead_letters, *(
                            DeadLetter("journal", reason, "", e.encoded().encode())
                            for e, reason in zip(events, refused, strict=True) if reason is not None
                        )]  # fmt: skip
                    if dead_letters:
                        self._insert_dead(conn, dead_letters, now)
                    failures = 0
                    if writers and any(inserted):
                        new = [e for e, fresh in zip(events, inserted, strict=True) if fresh]
                        failures = sum(not _run_writer(conn, writer, new) for writer in writers)
            except BaseException:
                if admission is not None:
                    admission.settle(False)
                raise
            if admission is not None:
                admission.settle(True)
        if admission is not None:
            admission.after_commit()
        return CommitResult(inserted, len(dead_letters), failures, tuple(refused))

    @staticmethod
    def _insert_events(conn: sqlite3.Connection, events: Sequence[Event]) -> tuple[bool, ...]:
        before = conn.total_changes
        last_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        conn.executemany(INSERT_EVENT, [event.row() for event in events])
        if conn.total_changes - before == len(events):
            return (True,) * len(events)
        # some were duplicates: the rows past last_seq are the new ones
        new_ids = {r[0] for r in conn.execute("SELECT message_id FROM events WHERE seq > ?", (last_seq,))}
        flags = []
        for event in events:
            flags.append(event.message_id in new_ids)
            new_ids.discard(event.message_id)  # a second copy in the same batch is a duplicate
        return tuple(flags)

    def _insert_dead(self, conn: sqlite3.Connection, letters: Sequence[DeadLetter], now: int) -> None:
        rows = [self._dead_row(d, now) for d in letters]
        if self._admission is None:  # no feature keeps subjects (nor their dead_letters column)
            rows = [row[:-1] for row in rows]
        conn.executemany(
            "INSERT INTO dead_letters (received_ms, source, reason, detail, size, sha256, excerpt"
            + (", subject) VALUES (?,?,?,?,?,?,?,?)" if self._admission else ") VALUES (?,?,?,?,?,?,?)"),
            rows,
        )
        conn.execute(
            "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
            (self.dead_letter_max,),
        )

    def _dead_row(self, d: DeadLetter, now: int) -> tuple[Any, ...]:
        subjects = [self._admission.subject(s) for s in d.subjects] if self._admission else []
        if d.reason == "suppressed" or any(suppressed for _, suppressed in subjects):
            # about an erased person: only that something was refused, when, and how big
            return (now, "", d.reason, "", len(d.payload), "", "", None)
        return (
            now,
            scrub(d.source)[:200],
            d.reason,
            scrub(d.detail)[:500],
            len(d.payload),
            hashlib.sha256(d.payload).hexdigest(),
            scrub(d.excerpt)[:512] if d.excerpt is not None else scrub_bytes(d.payload),
            " ".join(digest for digest, _ in subjects) or None,
        )

    # -- the outbox seam -------------------------------------------------------------------
    def cursor(self, sink: str) -> int:
        row = self.reader().execute("SELECT seq FROM sink_cursors WHERE sink = ?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def read_after(
        self, sink: str, *, limit: int = 2500, max_bytes: int = 500_000, after: int | None = None
    ) -> list[JournalRecord]:
        """Events past ``sink``'s cursor (or past ``after``), oldest first, within both limits."""
        start = self.cursor(sink) if after is None else after
        out: list[JournalRecord] = []
        total = 0
        rows = (
            self.reader()
            .execute(
                "SELECT seq, message_id, event, user_id, received_ms, sync_allowed, body"
                " FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (start, limit),
            )
            .fetchall()
        )
        for row in rows:
            size = len(row[6])
            if out and total + size > max_bytes:
                break
            total += size
            out.append(JournalRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6]))
        return out

    def confirm(self, sink: str, seq: int) -> None:
        """Move ``sink``'s cursor to ``seq`` (never backwards). Call only after the sink confirmed."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO sink_cursors (sink, seq, updated_ms) VALUES (?, ?, ?)"
                " ON CONFLICT(sink) DO UPDATE SET seq = MAX(seq, excluded.seq),"
                " updated_ms = excluded.updated_ms",
                (sink, seq, _now_ms()),
            )

    def backlog(self, sink: str) -> int:
        row = self.reader().execute("SELECT COUNT(*) FROM events WHERE seq > ?", (self.cursor(sink),)).fetchone()
        return int(row[0])

    # -- what the outbox, its quota and status ask of the events table ---------------------
    def max_seq(self) -> int:
        """The newest event's seq (0 when empty), as the writer sees it — inside a caller's
        transaction, that transaction's own inserts included."""
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def personless_seqs(self, first: int, last: int) -> set[int]:
        """Seqs between ``first`` and ``last`` (inclusive) of events about no one (neither a
        userId nor an anonymousId): device status, audience counts, erasure confirmations."""
        rows = self.reader().execute(
            "SELECT seq FROM events WHERE seq BETWEEN ? AND ? AND user_id IS NULL AND anonymous_id IS NULL",
            (first, last),
        )
        return {row[0] for row in rows}

    def bytes_after(self, seq: int) -> int:
        """Total ``size`` of the events past ``seq`` (the planner answers it from a covering
        ``(seq, size)`` index when the sync feature created one)."""
        row = self.reader().execute("SELECT COALESCE(SUM(size), 0) FROM events WHERE seq > ?", (seq,)).fetchone()
        return int(row[0])

    def oldest_after(self, seq: int) -> int | None:
        """``received_ms`` of the oldest event past ``seq``; None when there is none."""
        row = self.reader().execute("SELECT MIN(received_ms) FROM events WHERE seq > ?", (seq,)).fetchone()
        return None if row[0] is None else int(row[0])

    def sizes_after(
        self, seq: int, names: Sequence[str], *, named: bool = True, limit: int = 2000
    ) -> list[tuple[int, str, int]]:
        """``(seq, name, size)`` of the oldest events past ``seq`` whose name (``event``, else
        ``type``) is in ``names`` — or, with ``named=False``, is not — at most ``limit``."""
        marks = ",".join("?" * len(names))
        where = f"event IN ({marks})" if named else f"COALESCE(event, '') NOT IN ({marks})"
        with self._lock:
            return [
                (int(s), str(n), int(b))
                for s, n, b in self._conn.execute(
                    f"SELECT seq, COALESCE(event, type), size FROM events WHERE seq > ? AND {where}"
                    " ORDER BY seq LIMIT ?",
                    (seq, *names, limit),
                )
            ]

    def delete_events(self, seqs: Sequence[int]) -> int:
        """Delete events by seq (the outbox quota's drops); returns rows removed."""
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
            return conn.total_changes - before

    def record(self, event: Event) -> bool:
        """Store one event the gateway made about no one (a drop report), with no admission —
        inside the caller's transaction when there is one; False if its messageId is stored."""
        with self.transaction() as conn:
            return conn.execute(INSERT_EVENT, event.row()).rowcount == 1

    # -- what the decisioning feature asks of the events table -----------------------------
    def has(self, message_id: str) -> bool:
        """Whether an event with ``message_id`` is stored — inside a commit, as the commit sees
        it (the admission's redelivery check)."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM events WHERE message_id = ?", (message_id,)).fetchone() is not None

    def visits_of(self, user_id: str, *, snapshot: bool = False) -> tuple[str, ...]:
        """The anonymous ids of visits ``user_id`` identified in (events carrying both ids),
        sorted. ``snapshot``: read on this thread's reader (inside its open read transaction)
        instead of the writer."""
        sql = (
            "SELECT DISTINCT anonymous_id FROM events WHERE user_id = ? AND anonymous_id IS NOT NULL"
            " ORDER BY anonymous_id"
        )
        if snapshot:
            return tuple(r[0] for r in self.reader().execute(sql, (user_id,)))
        with self._lock:
            return tuple(r[0] for r in self._conn.execute(sql, (user_id,)))

    # -- what the triggers feature asks of the events table --------------------------------
    def stored_between(
        self, start_ms: int, end_ms: int | None = None, *, events: Collection[str] | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows ``(message_id, type, event, user_id, anonymous_id, device_id, channel, timestamp,
        received_ms, body)`` received in ``[start_ms, end_ms)`` (no end: up to now), optionally
        of these event names only, in commit order — what a feature replays to rebuild its state.
        Streamed from this thread's reader: a busy day's journal is never in memory at once
        (consume it on the thread that asked)."""
        sql = ("SELECT message_id, type, event, user_id, anonymous_id, device_id, channel, timestamp,"
               " received_ms, body FROM events WHERE received_ms >= ?")  # fmt: skip
        args: list[Any] = [start_ms]
        if end_ms is not None:
            sql += " AND received_ms < ?"
            args.append(end_ms)
        if events is not None:
            names = sorted(events)
            if not names:
                return iter(())
            sql += f" AND event IN ({','.join('?' * len(names))})"
            args += names
        return iter(self.reader().execute(sql + " ORDER BY seq", args))

    # -- what the campaign uplift report asks of the events table -------------------------
    def events_of(self, user_ids: Sequence[str], event: str) -> list[tuple[str, int, str]]:
        """``(user_id, received_ms, body)`` of every ``event`` the journal holds for these
        pseudonymous users (the CUPED covariate: their spend before a campaign reached them)."""
        out: list[tuple[str, int, str]] = []
        ids = sorted(set(user_ids))
        reader = self.reader()
        for i in range(0, len(ids), 500):  # (SQLite's bound-parameter limit)
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out += reader.execute(
                f"SELECT user_id, received_ms, body FROM events WHERE event = ? AND user_id IN ({marks})",
                (event, *chunk),
            ).fetchall()
        return out

    # -- reading and housekeeping ----------------------------------------------------------
    def message_ids(self) -> set[str]:
        return {r[0] for r in self.reader().execute("SELECT message_id FROM events")}

    def get(self, message_id: str) -> str | None:
        row = self.reader().execute("SELECT body FROM events WHERE message_id = ?", (message_id,)).fetchone()
        return row[0] if row else None

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters kept, by reason (the ops dashboard)."""
        rows = self.reader().execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY 1").fetchall()
        return {str(reason): int(n) for reason, n in rows}

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(
                "SELECT id, received_ms, source, reason, detail, size, sha256, excerpt"
                " FROM dead_letters ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            names = [c[0] for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            conn = self._conn
            events, first, last = conn.execute(
                "SELECT COUNT(*), MIN(received_ms), MAX(received_ms) FROM events"
            ).fetchone()
            by_name = dict(
                conn.execute("SELECT COALESCE(event, type), COUNT(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall()
            )
            dead = dict(conn.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY 1").fetchall())
            cursors = dict(conn.execute("SELECT sink, seq FROM sink_cursors").fetchall())
            max_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        return {
            "path": str(self.path),
            "events": events,
            "max_seq": max_seq,
            "first_received_ms": first,
            "last_received_ms": last,
            "by_event": by_name,
            "dead_letters": dead,
            "sink_cursors": cursors,
            "bytes_on_disk": size,
            "migrations": self.applied_migrations(),
        }

    def erase_user(self, user_id: str) -> int:
        """Delete every event about ``user_id`` and flush the WAL so no copy stays behind."""
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM events WHERE user_id = ? OR instr(body, ?) > 0", (user_id, user_id))
            removed = cur.rowcount
        self.checkpoint()
        return removed

    def prune(self, older_than_ms: int) -> int:
        """Retention: delete events received before ``older_than_ms``."""
        with self.transaction() as conn:
            removed = conn.execute("DELETE FROM events WHERE received_ms < ?", (older_than_ms,)).rowcount
        return removed

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after erasure, on shutdown)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
