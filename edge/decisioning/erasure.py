"""Erasure and the suppression list.

:meth:`Eraser.erase` removes a person (by token) from the journal, consent, profile, exposures,
redemptions and cap state — plus whatever other components registered with :meth:`add_hook`
(presence) — in transactions on the journal's file, which has ``secure_delete`` on, then
checkpoints the WAL (TRUNCATE) so no copy survives in it. The token is added to the suppression
list *as a keyed digest* (the token itself must not stay behind), and the identity pre-stage
drops every later event of that person (counted as rejected, reason ``suppressed``).

A confirmation is recorded in ``erasures`` (request id, time, number of rows removed — nothing
about the person) and published by the running gateway as a ``Customer Erased`` event for the
CDP; an erasure made by the CLI in another process is picked up the same way, and that
process's caches are refreshed from the suppression table (:meth:`Eraser.refresh`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence

from edge.decisioning.identity import Identity
from edge.events import TOKEN_PATTERN, Event
from edge.ids import uuid7
from edge.journal import Journal

__all__ = ["Eraser"]

_PURPOSE = "suppress"


class Eraser:
    def __init__(self, journal: Journal, identity: Identity, clock: Callable[[], float]) -> None:
        self.journal = journal
        self.identity = identity
        self.clock = clock
        self._lock = threading.Lock()
        self._digests: set[str] = set()
        self._hooks: list[Callable[[str], int]] = []
        self.refresh()

    def add_hook(self, hook: Callable[[str], int]) -> Callable[[], None]:
        """``hook(token) -> rows removed`` runs on every erasure; returns its undo callable."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook)

    def digest(self, user_id: str) -> str:
        return self.identity.keyed_digest(_PURPOSE, user_id)

    def is_suppressed(self, user_id: str | None) -> bool:
        return bool(user_id) and self.digest(user_id) in self._digests  # type: ignore[arg-type]

    def refresh(self) -> bool:
        """Reload the suppression list (erasures by other processes); True when it grew."""
        with self.journal.connection() as conn:
            digests = {row[0] for row in conn.execute("SELECT digest FROM suppressions")}
        with self._lock:
            grew = not digests <= self._digests
            self._digests = digests | self._digests
        return grew

    def erase(self, user_id: str, request_id: str | None = None) -> int:
        """Erase ``user_id`` everywhere; returns the number of rows removed."""
        if not TOKEN_PATTERN.match(user_id):
            raise ValueError("erase needs a customer token (ct_…); tokenise raw identifiers first")
        request_id = request_id or uuid7()
        digest = self.digest(user_id)
        now_ms = int(self.clock() * 1000)
        with self._lock:
            self._digests.add(digest)  # first, so nothing new is accepted while we delete
        with self.journal.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO suppressions VALUES (?, ?)", (digest, now_ms))
            removed = self._delete_rows(conn, user_id)
        for hook in list(self._hooks):
            removed += hook(user_id)
        removed += self.journal.erase_user(user_id)  # deletes events, then checkpoints the WAL
        with self.journal.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO erasures (request_id, erased_ms, removed, confirmed_ms)"
                " VALUES (?, ?, ?, NULL)",
                (request_id, now_ms, removed),
            )
        self.journal.checkpoint()
        return removed

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, user_id: str) -> int:
        visit_prefix = user_id + ":"
        removed = 0
        for sql, args in (
            ("DELETE FROM consent WHERE user_id = ?", (user_id,)),
            ("DELETE FROM profiles WHERE user_id = ?", (user_id,)),
            ("DELETE FROM exposures WHERE user_id = ? OR unit_key = ? OR person_key = ?"
             " OR substr(visit_key, 1, ?) = ?",
             (user_id, user_id, user_id, len(visit_prefix), visit_prefix)),
            ("DELETE FROM redemptions WHERE user_id = ? OR unit_key = ?", (user_id, user_id)),
        ):
            removed += conn.execute(sql, args).rowcount
        return removed

    def listen(self, events: Sequence[Event]) -> None:
        """Journal listener, run last: whatever of an erased person raced the erasure (an event
        accepted while it ran, and the rows other listeners derived from it) is erased too."""
        late = {e.user_id for e in events if e.user_id and self.is_suppressed(e.user_id)}
        for user_id in sorted(u for u in late if u):
            with self.journal.transaction() as conn:
                self._delete_rows(conn, user_id)
            self.journal.erase_user(user_id)

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
