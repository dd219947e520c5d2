"""The consent ledger: per person, per purpose, default deny — an ordered log of choices.

Each purpose's record keeps whether it is granted, the source of the choice (kiosk, app, cdp,
associate), the notice version shown, when the choice was made (the event's ``timestamp``) and
the ``messageId`` of the ``Consent Updated`` event that made it. A change arrives as that event
(from a device, from ``POST /v1/consent`` or from the CDP downlink) and is applied by
:meth:`ConsentLedger.admit`, inside the journal commit that stores the event for the first time:

* a duplicate (a QoS 1 or HTTP redelivery of a stored messageId) is never applied again;
* per person and purpose the newest choice *by event time* wins (the ``timestamp``, capped at
  the arrival time; equal times: the one stored later — arrival order): an older
  change arriving late is stored in the journal, counted (:attr:`ConsentLedger.stale`), and does
  not override a newer one;
* every event the commit stores is stamped with the snapshot in force at that point of the
  commit (its own change included), so the table, the memory and the stamps never disagree.

The ingest post-stage :meth:`ConsentLedger.stage` only validates a change (naming what is wrong)
and records the source it implies.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.errors import InvalidEvent
from edge.events import Event
from edge.journal import Journal

__all__ = ["CONSENT_EVENT", "PERSONLESS", "PURPOSES", "SOURCES", "ConsentLedger", "ConsentRecord", "event_time_ms"]

CONSENT_EVENT = "Consent Updated"
PURPOSES = ("personalization", "analytics", "cdp_sync")
SOURCES = ("kiosk", "app", "cdp", "associate")
#: Events about no one (neither userId nor anonymousId: audience counts, device status, erasure
#: confirmations) are not personal data: they may be analysed and synced.
PERSONLESS = {"personalization": False, "analytics": True, "cdp_sync": True}
#: The consent source a device's channel implies when the event does not name one.
_SOURCE_BY_CHANNEL = {"kiosk": "kiosk", "tablet": "associate", "ops": "cdp", "gateway": "cdp"}
_UPSERT = (
    "INSERT INTO consent (user_id, purpose, granted, source, notice_version, updated_ms,"
    " message_id) VALUES (?,?,?,?,?,?,?) ON CONFLICT(user_id, purpose) DO UPDATE SET"
    " granted=excluded.granted, source=excluded.source, notice_version=excluded.notice_version,"
    " updated_ms=excluded.updated_ms, message_id=excluded.message_id"
)


@dataclass(frozen=True)
class ConsentRecord:
    purpose: str
    granted: bool
    source: str
    notice_version: str
    updated_ms: int  # when the choice was made (event time)
    message_id: str = ""  # the Consent Updated event that made it

    def as_json(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "source": self.source,
            "noticeVersion": self.notice_version,
            "updatedMs": self.updated_ms,
            "messageId": self.message_id,
        }

    def supersedes(self, other: ConsentRecord | None) -> bool:
        """A choice made at the same time or later replaces ``other`` (equal times: the one
        stored later wins, so two changes within one millisecond keep their arrival order)."""
        return other is None or self.updated_ms >= other.updated_ms


class ConsentLedger:
    """Thread-safe; reads from memory, which the commit keeps equal to the ``consent`` table."""

    def __init__(self, journal: Journal, default_notice_version: str = "unknown") -> None:
        self.journal = journal
        self.default_notice_version = default_notice_version
        self.stale = 0  # changes stored but not applied: a newer choice was already in force
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, ConsentRecord]] = {}
        self._undo: list[tuple[str, dict[str, ConsentRecord] | None]] = []
        with journal.connection() as conn:
            rows = conn.execute(
                "SELECT user_id, purpose, granted, source, notice_version, updated_ms, message_id FROM consent"
            ).fetchall()
        for user_id, purpose, granted, source, notice, updated, message_id in rows:
            self._records.setdefault(user_id, {})[purpose] = ConsentRecord(
                purpose, bool(granted), source, notice, updated, message_id
            )

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

    # -- the commit (called by the decisioning admission, inside the transaction) ----------
    def apply_event(self, conn: sqlite3.Connection, event: Event) -> list[ConsentRecord]:
        """Apply a ``Consent Updated`` event stored for the first time, by the ordered rule;
        returns the records it changed (none for a stale change)."""
        if event.name != CONSENT_EVENT or event.user_id is None:
            return []
        return self._apply(conn, event.user_id, self._from_event(event))

    @staticmethod
    def stamp(event: Event, preferences: dict[str, bool]) -> None:
        """Set ``context.consent.categoryPreferences`` (a device's own claim is overwritten)."""
        context = event.body["context"]
        consent = context.get("consent")
        if not isinstance(consent, dict):
            consent = context["consent"] = {}
        consent["categoryPreferences"] = preferences

    def _apply(self, conn: sqlite3.Connection, user_id: str, new: list[ConsentRecord]) -> list[ConsentRecord]:
        with self._lock:
            current = self._records.get(user_id, {})
            applied = [r for r in new if r.supersedes(current.get(r.purpose))]
            self.stale += len(new) - len(applied)
            if not applied:
                return []
            self._undo.append((user_id, current if user_id in self._records else None))
            self._records[user_id] = {**current, **{r.purpose: r for r in applied}}
        conn.executemany(_UPSERT, [
            (user_id, r.purpose, int(r.granted), r.source, r.notice_version, r.updated_ms, r.message_id)
            for r in applied
        ])  # fmt: skip
        return applied

    def settle(self, committed: bool) -> None:
        """After the commit: keep the changes, or (rolled back) restore memory to the table."""
        with self._lock:
            undo, self._undo = self._undo, []
            if committed:
                return
            for user_id, before in reversed(undo):
                if before is None:
                    self._records.pop(user_id, None)
                else:
                    self._records[user_id] = before

    def _from_event(self, event: Event) -> list[ConsentRecord]:
        props = event.body.get("properties", {})
        source = props.get("consentSource") or _SOURCE_BY_CHANNEL.get(event.source.channel, "cdp")
        notice = props.get("noticeVersion") or self.default_notice_version
        at_ms = event_time_ms(event)
        return [
            ConsentRecord(p, g, source, notice, at_ms, event.message_id)
            for p, g in props.get("categoryPreferences", {}).items()
            if p in PURPOSES and isinstance(g, bool)
        ]

    def forget(self, user_id: str) -> None:
        """Erasure: drop the person's records (the caller deletes the rows in its transaction)."""
        with self._lock:
            self._records.pop(user_id, None)

    def expire(self, older_than_ms: int) -> None:
        """Retention: drop records made before ``older_than_ms`` (the rows are pruned)."""
        with self._lock:
            for user_id, records in list(self._records.items()):
                kept = {p: r for p, r in records.items() if r.updated_ms >= older_than_ms}
                if kept:
                    self._records[user_id] = kept
                else:
                    del self._records[user_id]

    # -- the ingest post-stage -------------------------------------------------------------
    def stage(self, event: Event) -> None:
        """Validate a ``Consent Updated`` event and record the source it implies; the change
        itself is applied when (and only if) the journal stores the event for the first time."""
        if event.name != CONSENT_EVENT:
            return
        if event.user_id is None:
            raise InvalidEvent("missing_field", "Consent Updated needs a userId or identifiers")
        props = event.body["properties"]
        validate_preferences(props["categoryPreferences"])
        source = props.get("consentSource") or _SOURCE_BY_CHANNEL.get(event.source.channel)
        if source is None:
            raise InvalidEvent("bad_consent", "properties.consentSource is required from this channel")
        if source not in SOURCES:
            raise InvalidEvent("bad_consent", f"consentSource must be one of {', '.join(SOURCES)}")
        props["consentSource"] = source
        notice = props.get("noticeVersion")
        if notice is not None and not isinstance(notice, str):
            raise InvalidEvent("bad_consent", "properties.noticeVersion must be a string")


def validate_preferences(preferences: Mapping[str, Any]) -> dict[str, bool]:
    if not isinstance(preferences, Mapping) or not preferences:
        raise InvalidEvent("bad_consent", "categoryPreferences must name at least one purpose")
    out: dict[str, bool] = {}
    for purpose, granted in preferences.items():
        if purpose not in PURPOSES:
            raise InvalidEvent("bad_consent", f"unknown purpose {str(purpose)[:30]!r}; one of {', '.join(PURPOSES)}")
        if not isinstance(granted, bool):
            raise InvalidEvent("bad_consent", f"categoryPreferences.{purpose} must be true or false")
        out[purpose] = granted
    return out


def event_time_ms(event: Event) -> int:
    """When the choice was made: the event's ``timestamp`` (the device clock), but never later
    than its arrival — a future-dated change must not outlast the person's next choice."""
    try:
        parsed = datetime.fromisoformat(event.timestamp.replace("Z", "+00:00"))
    except ValueError:
        return event.received_ms
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return min(int(parsed.timestamp() * 1000), event.received_ms)
