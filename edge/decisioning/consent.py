"""The consent ledger: per person, per purpose, default deny.

Each purpose's record keeps whether it is granted, the source of the choice (kiosk, app, cdp,
associate), the notice version shown and when it was made. A change arrives as a
``Consent Updated`` event (from a device, from ``POST /v1/consent`` or from the CDP downlink);
:meth:`ConsentLedger.stage` — an ingest post-stage — applies it *before* stamping, so every
journaled event carries the snapshot in force when it arrived, the change itself included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.errors import InvalidEvent
from edge.events import Event
from edge.journal import Journal

__all__ = ["PERSONLESS", "PURPOSES", "SOURCES", "ConsentLedger", "ConsentRecord"]

PURPOSES = ("personalization", "analytics", "cdp_sync")
SOURCES = ("kiosk", "app", "cdp", "associate")
#: Events about no one (neither userId nor anonymousId: audience counts, device status, erasure
#: confirmations) are not personal data: they may be analysed and synced.
PERSONLESS = {"personalization": False, "analytics": True, "cdp_sync": True}
#: The consent source a device's channel implies when the event does not name one.
_SOURCE_BY_CHANNEL = {"kiosk": "kiosk", "tablet": "associate", "ops": "cdp", "gateway": "cdp"}


@dataclass(frozen=True)
class ConsentRecord:
    purpose: str
    granted: bool
    source: str
    notice_version: str
    updated_ms: int

    def as_json(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "source": self.source,
            "noticeVersion": self.notice_version,
            "updatedMs": self.updated_ms,
        }


class ConsentLedger:
    """Thread-safe; reads from memory.

    A change from a ``Consent Updated`` event takes effect in memory in the ingest post-stage
    (so the event itself is stamped with it) and reaches the ``consent`` table from the journal
    listener, in the writer thread — no SQLite commit on the caller's thread, which may be the
    event loop. The journaled events are the source of truth: at start, changes journaled after
    the table's newest record (a crash between the commit and the listener) are replayed.
    """

    def __init__(
        self, journal: Journal, is_suppressed: Callable[[str], bool] = lambda user_id: False,
        default_notice_version: str = "unknown",
    ) -> None:
        self.journal = journal
        self.is_suppressed = is_suppressed
        self.default_notice_version = default_notice_version
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, ConsentRecord]] = {}
        with journal.connection() as conn:
            rows = conn.execute(
                "SELECT user_id, purpose, granted, source, notice_version, updated_ms FROM consent"
            ).fetchall()
            newest = max((r[5] for r in rows), default=0)
            missed = conn.execute(
                "SELECT user_id, body FROM events WHERE event = 'Consent Updated'"
                " AND received_ms >= ? AND user_id IS NOT NULL ORDER BY seq",
                (newest,),
            ).fetchall()
        for user_id, purpose, granted, source, notice, updated in rows:
            self._records.setdefault(user_id, {})[purpose] = ConsentRecord(
                purpose, bool(granted), source, notice, updated
            )
        replayed = [self._from_body(user_id, json.loads(body)) for user_id, body in missed]
        for user_id, records in replayed:
            self._merge(user_id, records)
        self._persist([(u, r) for u, rs in replayed for r in rs])

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self, user_id: str | None) -> dict[str, bool]:
        """``{purpose: granted}`` for every purpose; anonymous and unknown persons: all False."""
        records = self._records.get(user_id, {}) if user_id else {}
        return {p: (records[p].granted if p in records else False) for p in PURPOSES}

    def allows(self, user_id: str | None, purpose: str) -> bool:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown consent purpose {purpose!r}; one of {', '.join(PURPOSES)}")
        if not user_id:
            return False
        record = self._records.get(user_id, {}).get(purpose)
        return record is not None and record.granted

    def known_users(self) -> set[str]:
        return set(self._records)

    def records(self, user_id: str) -> dict[str, ConsentRecord]:
        return dict(self._records.get(user_id, {}))

    # -- writing ---------------------------------------------------------------------------
    def apply(
        self,
        user_id: str,
        preferences: Mapping[str, Any],
        source: str,
        notice_version: str | None,
        at_ms: int,
        *,
        persist: bool = True,
    ) -> dict[str, bool]:
        """Record a choice; purposes not named keep their state. Returns the new snapshot.

        ``persist=False`` changes memory only (the ingest post-stage: the listener persists)."""
        changes = validate_preferences(preferences)
        if source not in SOURCES:
            raise InvalidEvent("bad_consent", f"consent source must be one of {', '.join(SOURCES)}")
        notice = notice_version or self.default_notice_version
        new = [ConsentRecord(p, g, source, notice, at_ms) for p, g in changes.items()]
        self._merge(user_id, new)
        if persist:
            self._persist([(user_id, r) for r in new])
        return self.snapshot(user_id)

    def _merge(self, user_id: str, new: list[ConsentRecord]) -> None:
        with self._lock:
            records = dict(self._records.get(user_id, {}))
            records.update({r.purpose: r for r in new})
            self._records[user_id] = records

    def _persist(self, rows: list[tuple[str, ConsentRecord]]) -> None:
        if not rows:
            return
        with self.journal.transaction() as conn:
            conn.executemany(
                "INSERT INTO consent (user_id, purpose, granted, source, notice_version,"
                " updated_ms) VALUES (?,?,?,?,?,?) ON CONFLICT(user_id, purpose) DO UPDATE SET"
                " granted=excluded.granted, source=excluded.source,"
                " notice_version=excluded.notice_version, updated_ms=excluded.updated_ms"
                " WHERE excluded.updated_ms >= consent.updated_ms",
                [(u, r.purpose, int(r.granted), r.source, r.notice_version, r.updated_ms)
                 for u, r in rows],
            )

    def _from_body(self, user_id: str, body: Mapping[str, Any]) -> tuple[str, list[ConsentRecord]]:
        """The records a journaled ``Consent Updated`` event made (it was valid when stored)."""
        props = body.get("properties", {})
        source = props.get("consentSource") or _SOURCE_BY_CHANNEL.get(body.get("channel", ""), "cdp")
        notice = props.get("noticeVersion") or self.default_notice_version
        at_ms = _received_ms(body)
        return user_id, [
            ConsentRecord(p, g, source, notice, at_ms)
            for p, g in props.get("categoryPreferences", {}).items()
            if p in PURPOSES and isinstance(g, bool)
        ]

    def listen(self, events: Sequence[Event]) -> None:
        """Journal listener: persist the consent changes just committed."""
        rows = []
        for event in events:
            if event.name == "Consent Updated" and event.user_id and not self.is_suppressed(event.user_id):
                user_id, records = self._from_body(event.user_id, event.body)
                rows += [(user_id, r) for r in records]
        self._persist(rows)

    def forget(self, user_id: str) -> None:
        """Erasure: drop the person's records (the caller deletes the rows in its transaction)."""
        with self._lock:
            self._records.pop(user_id, None)

    # -- the ingest post-stage -------------------------------------------------------------
    def stage(self, event: Event) -> None:
        """Apply a ``Consent Updated`` event, then stamp the snapshot on every event."""
        if event.name == "Consent Updated":
            if event.user_id is None:
                raise InvalidEvent("missing_field", "Consent Updated needs a userId or identifiers")
            props = event.body["properties"]
            source = props.get("consentSource") or _SOURCE_BY_CHANNEL.get(event.source.channel)
            if source is None:
                raise InvalidEvent(
                    "bad_consent", "properties.consentSource is required from this channel"
                )
            notice = props.get("noticeVersion")
            if notice is not None and not isinstance(notice, str):
                raise InvalidEvent("bad_consent", "properties.noticeVersion must be a string")
            self.apply(event.user_id, props["categoryPreferences"], source, notice,
                       event.received_ms, persist=False)
        context = event.body["context"]
        consent = context.get("consent")
        if not isinstance(consent, dict):
            consent = context["consent"] = {}
        if event.user_id is None and event.anonymous_id is None:
            consent["categoryPreferences"] = dict(PERSONLESS)
        else:
            consent["categoryPreferences"] = self.snapshot(event.user_id)


def validate_preferences(preferences: Mapping[str, Any]) -> dict[str, bool]:
    if not isinstance(preferences, Mapping) or not preferences:
        raise InvalidEvent("bad_consent", "categoryPreferences must name at least one purpose")
    out: dict[str, bool] = {}
    for purpose, granted in preferences.items():
        if purpose not in PURPOSES:
            raise InvalidEvent(
                "bad_consent", f"unknown purpose {str(purpose)[:30]!r}; one of {', '.join(PURPOSES)}"
            )
        if not isinstance(granted, bool):
            raise InvalidEvent("bad_consent", f"categoryPreferences.{purpose} must be true or false")
        out[purpose] = granted
    return out


def _received_ms(body: Mapping[str, Any]) -> int:
    try:
        return int(datetime.fromisoformat(str(body["receivedAt"]).replace("Z", "+00:00")).timestamp() * 1000)
    except (KeyError, ValueError):
        return 0
