"""Erasure and the suppression list.

:meth:`Eraser.erase` removes a person (by token) from every table of
:data:`~edge.decisioning.personal.PERSONAL_TABLES` — the journal's events (also the anonymous
events of every visit the person identified in), consent history, profile, exposures,
redemptions, rotating-id registrations; dead letters about them are emptied to reason, time and
size — plus whatever other components registered with :meth:`add_hook` (presence), in one
transaction on the journal's file, which has ``secure_delete`` on, then checkpoints the WAL
(TRUNCATE, retried until no reader holds it back) so no copy survives in it.

The token and those visit ids go on the suppression list *as keyed digests* (the token itself
must not stay behind) *before* anything is deleted; the journal's admission
(:mod:`edge.decisioning.admission`) refuses, inside every commit, any event naming one of them,
whatever path it came by. A confirmation is recorded in ``erasures`` (request id, time, number of
rows removed — nothing about the person) and published by the running gateway as a
``Customer Erased`` event for the CDP; an erasure made by the CLI in another process (no gateway
running) is picked up the same way at the next start, and a running process's caches are
refreshed from the suppression table (:meth:`Eraser.refresh`).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from edge.decisioning.identity import Identity
from edge.decisioning.personal import Person, existing
from edge.events import TOKEN_PATTERN, Event
from edge.ids import uuid7
from edge.journal import Journal

__all__ = ["Eraser", "erase_rows"]

_PURPOSE = "suppress"
_CHECKPOINT_TRIES = 200


class Eraser:
    def __init__(self, journal: Journal, identity: Identity, clock: Callable[[], float]) -> None:
        self.journal = journal
        self.identity = identity
        self.clock = clock
        self._lock = threading.Lock()
        self._digests: frozenset[str] = frozenset()
        self._hooks: list[Callable[[str], int]] = []
        self.digest = functools.lru_cache(maxsize=16_384)(self._digest)  # hot: every commit
        self.refresh()

    def add_hook(self, hook: Callable[[str], int]) -> Callable[[], None]:
        """``hook(token) -> rows removed`` runs on every erasure; returns its undo callable."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook)

    def _digest(self, subject_id: str) -> str:
        return self.identity.keyed_digest(_PURPOSE, subject_id)

    def is_suppressed(self, subject_id: str | None) -> bool:
        """True for an erased token or a visit id it identified in (checked in every commit)."""
        digests = self._digests
        return bool(digests) and bool(subject_id) and self.digest(subject_id) in digests

    def refresh(self) -> bool:
        """Reload the suppression list (erasures by other processes); True when it grew."""
        with self.journal.connection() as conn:
            digests = {row[0] for row in conn.execute("SELECT digest FROM suppressions")}
        with self._lock:
            grew = not digests <= self._digests
            self._digests = self._digests | digests
        return grew

    def person(self, token: str, *, snapshot: bool = False) -> Person:
        """Whom to erase or export: the token, its linked visits and their digests (``snapshot``:
        read inside this thread's open read transaction, see :meth:`Journal.visits_of`)."""
        visits = self.journal.visits_of(token, snapshot=snapshot)
        return Person(token, visits, tuple(self.digest(s) for s in (token, *visits)))

    def erase(self, user_id: str, request_id: str | None = None) -> int:
        """Erase ``user_id`` everywhere; returns the number of rows removed. When it returns,
        the person's rows are gone (database, WAL) and nothing about them can be committed."""
        return self.erase_person(user_id, request_id)[0]

    def erase_person(self, user_id: str, request_id: str | None = None) -> tuple[int, Person]:
        """:meth:`erase`, also returning whom it found (token, linked visits, digests)."""
        if not TOKEN_PATTERN.match(user_id):
            raise ValueError("erase needs a customer token (ct_…); tokenise raw identifiers first")
        request_id = request_id or uuid7()
        now_ms = int(self.clock() * 1000)
        self._suppress(self.person(user_id).digests)  # first: nothing new is stored
        with self.journal.transaction() as conn:
            person = self.person(user_id)  # a visit linked since is suppressed too
            self._suppress(person.digests)
            conn.executemany("INSERT OR IGNORE INTO suppressions VALUES (?, ?)",
                             [(d, now_ms) for d in person.digests])  # fmt: skip
            removed = erase_rows(conn, person)
        for hook in list(self._hooks):
            removed += hook(user_id)
        with self.journal.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO erasures (request_id, erased_ms, removed, confirmed_ms) VALUES (?, ?, ?, NULL)",
                (request_id, now_ms, removed),
            )
        self.checkpoint()
        return removed, person

    def _suppress(self, digests: Sequence[str]) -> None:
        with self._lock:
            self._digests = self._digests | set(digests)

    def checkpoint(self) -> None:
        """TRUNCATE the WAL, retrying while a reader holds it back: the erased pages must leave it."""
        for _ in range(_CHECKPOINT_TRIES):
            with self.journal.connection() as conn:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return
            time.sleep(0.01)

    def listen(self, events: Sequence[Event]) -> None:
        """Journal listener, run last: rows another listener derived for an erased person
        after the erasure (it read the person as allowed just before) are erased too."""
        late = {e.user_id for e in events if e.user_id and self.is_suppressed(e.user_id)}
        if not late:
            return
        with self.journal.transaction() as conn:
            for user_id in sorted(u for u in late if u):
                erase_rows(conn, self.person(user_id))
        self.journal.checkpoint()  # one attempt: this runs on the journal writer's thread

    def pending_confirmations(self) -> list[tuple[str, int, int]]:
        with self.journal.connection() as conn:
            return conn.execute(
                "SELECT request_id, erased_ms, removed FROM erasures WHERE confirmed_ms IS NULL"
                " ORDER BY erased_ms, request_id"
            ).fetchall()

    def confirmed(self, request_id: str) -> None:
        with self.journal.transaction() as conn:
            conn.execute(
                "UPDATE erasures SET confirmed_ms = ? WHERE request_id = ?",
                (int(self.clock() * 1000), request_id),
            )


def erase_rows(conn: sqlite3.Connection, person: Person) -> int:
    """Delete (or, for dead letters, empty) every row about ``person``; returns rows touched."""
    removed = 0
    params = person.params()
    for table in existing(conn):
        if table.on_erase == "delete":
            sql = f"DELETE FROM {table.table} WHERE {table.subject}"
        else:
            sql = (f"UPDATE {table.table} SET source = '', detail = '', sha256 = '', excerpt = '',"
                   f" subject = NULL WHERE {table.subject}")  # fmt: skip
        removed += conn.execute(sql, params).rowcount
    return removed
