"""The decisioning rule the journal runs inside every commit (:class:`edge.journal.Admission`).

For each event of the group commit, in order, under the journal's lock and in its transaction:

1. **Suppression**: an event whose ``userId`` or ``anonymousId`` is on the suppression list (an
   erased person, a visit they identified in) is refused with reason ``suppressed`` — whatever
   path it came by (HTTP, MQTT, serial, BLE, camera, the downlink, a component's own events);
   its dead letter keeps only reason, time and size.
2. **Consent**: a ``Consent Updated`` event stored for the first time (not a redelivery of a
   stored messageId, not a second copy in the same commit) is applied by the ordered rule of
   :class:`~edge.decisioning.consent.ConsentLedger`; a withdrawal of ``personalization`` deletes
   the profile row in the same transaction (and from memory right after the commit, before
   anyone is told it is committed).
3. **Stamp**: the event gets the consent snapshot in force at that point of the commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from edge.decisioning.consent import CONSENT_EVENT, PERSONLESS, PURPOSES, ConsentLedger
from edge.decisioning.erasure import Eraser
from edge.events import Event

__all__ = ["CommitAdmission"]

_ANONYMOUS = dict.fromkeys(PURPOSES, False)


class CommitAdmission:
    def __init__(
        self,
        eraser: Eraser,
        consent: ConsentLedger,
        on_personalization_withdrawn: Callable[[str], None],
        on_stale: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.stored = eraser.journal.has  # the commit's own view: this transaction's rows too
        self.eraser = eraser
        self.consent = consent
        self.on_personalization_withdrawn = on_personalization_withdrawn
        self.on_stale = on_stale
        self._withdrawn: list[str] = []  # profiles to drop from memory once the commit is in

    def admit(self, conn: sqlite3.Connection, events: Sequence[Event]) -> list[str | None]:
        reasons: list[str | None] = []
        seen: set[str] = set()
        snapshots: dict[str, dict[str, bool]] = {}  # per commit; dropped when a change applies
        stale_before = self.consent.stale
        suppressed = self.eraser.is_suppressed
        for event in events:
            user_id = event.user_id
            if suppressed(user_id) or suppressed(event.anonymous_id):
                reasons.append("suppressed")
                continue
            if event.name == CONSENT_EVENT and user_id is not None:
                fresh = event.message_id not in seen and not self.stored(event.message_id)
                seen.add(event.message_id)
                applied = self.consent.apply_event(conn, event) if fresh else []
                if applied:
                    snapshots.pop(user_id, None)
                if any(r.purpose == "personalization" and not r.granted for r in applied):
                    conn.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,))
                    self._withdrawn.append(user_id)
            if user_id is None:
                # events about no one are not personal; a visit's events carry no consent
                prefs = dict(PERSONLESS) if event.anonymous_id is None else dict(_ANONYMOUS)
            else:
                prefs = snapshots.get(user_id) or snapshots.setdefault(user_id, self.consent.snapshot(user_id))
            self.consent.stamp(event, prefs)
            reasons.append(None)
        if self.consent.stale > stale_before:
            self.on_stale(self.consent.stale - stale_before)
        return reasons

    def subject(self, subject_id: str) -> tuple[str, bool]:
        return self.eraser.digest(subject_id), self.eraser.is_suppressed(subject_id)

    def settle(self, committed: bool) -> None:
        self.consent.settle(committed)
        if not committed:
            self._withdrawn.clear()

    def after_commit(self) -> None:
        """Profiles withdrawn by the commit leave memory here: the journal lock is released,
        so the profile store's lock is never taken under it (its readers take them the other
        way round). Still before anyone is told the events are committed."""
        withdrawn, self._withdrawn = self._withdrawn, []
        for user_id in withdrawn:
            self.on_personalization_withdrawn(user_id)
