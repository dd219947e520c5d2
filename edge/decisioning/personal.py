"""Every table of the journal's file that holds personal data, in one list.

Erasure (:mod:`edge.decisioning.erasure`), retention (:mod:`edge.decisioning.retention`) and the
right of access (:mod:`edge.decisioning.export`) all read this list, so a table is either here —
with the column that dates its rows and the query that finds a person's rows — or it is listed
in :data:`NOT_PERSONAL` with the reason; ``tests/edge/decisioning/test_retention.py`` fails when a
table of the migrated schema is in neither.

A person is found by their customer token (``:user``), the anonymous visit ids they identified
in (``:anon``, a JSON array: the ``anonymousId`` of any journaled event that also carried their
``userId`` — a ``Customer Identified`` or identify call; :meth:`edge.journal.Journal.visits_of`) and the keyed digests of both
(``:digests``, a JSON array), which is all a dead letter keeps of whom it was about.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["NOT_PERSONAL", "PERSONAL_TABLES", "Person", "PersonalTable", "existing"]

_ANON = "(SELECT value FROM json_each(:anon))"


@dataclass(frozen=True)
class PersonalTable:
    table: str
    time_column: str  # unix ms; rows older than journal.retention_days are pruned
    subject: str  # SQL condition: the rows about the person
    holds: str  # what personal data it holds (the documentation table)
    on_erase: Literal["delete", "minimise"] = "delete"


PERSONAL_TABLES: tuple[PersonalTable, ...] = (
    PersonalTable(
        "events",
        "received_ms",
        f"user_id = :user OR instr(body, :user) > 0 OR anonymous_id IN {_ANON}",
        "every journaled event: token, visit id, what the person did",
    ),
    PersonalTable(
        "consent",
        "updated_ms",
        "user_id = :user",
        "the choice per purpose, its source, notice version, time and event id",
    ),
    PersonalTable(
        "profiles",
        "updated_ms",
        "user_id = :user",
        "recent items, categories, purchases (each purchase also pruned by its own date)",
    ),
    PersonalTable(
        "exposures",
        "ms",
        "user_id = :user OR unit_key = :user OR person_key = :user"
        " OR substr(visit_key, 1, length(:user) + 1) = :user || ':'"
        f" OR anonymous_id IN {_ANON} OR visit_key IN {_ANON} OR unit_key IN {_ANON}",
        "offers shown to the person or visit, their arm, views and clicks",
    ),
    PersonalTable(
        "redemptions",
        "ms",
        f"user_id = :user OR unit_key = :user OR anonymous_id IN {_ANON} OR unit_key IN {_ANON}",
        "offers the person redeemed: order id, SKU, quantity, revenue",
    ),
    PersonalTable(
        "devices_app_keys",
        "registered_ms",
        "token = :user",
        "the store app's rotating-id key of an opted-in person",
    ),
    PersonalTable(
        "trigger_firings",
        "fired_ms",
        f"user_id = :user OR unit = 'p:' || :user OR visit_id IN {_ANON}",
        "trigger firings: the trigger, arm, touch point, offers delivered, conversion, pre-period spend",
    ),
    PersonalTable(
        "dead_letters",
        "received_ms",
        "EXISTS (SELECT 1 FROM json_each(:digests) WHERE instr(dead_letters.subject, value) > 0)",
        "refused inputs: reason, size, a scrubbed excerpt; the subject only as a keyed digest",
        on_erase="minimise",
    ),
)

#: Tables that hold nothing about a person, and why.
NOT_PERSONAL: dict[str, str] = {
    "_migrations": "schema steps applied",
    "sink_cursors": "outbox position per sink",
    "devices": "the device registry (hashed credentials of store devices)",
    "suppressions": "keyed digests of erased tokens and their visit ids: the erasure's proof",
    "erasures": "request id, time and row count of each erasure; no token",
    "sync_sinks": "per-sink counters and last error",
    "sync_drops": "quota drop counts per event name",
    "sync_drops_unreported": "quota drop counts not yet reported",
    "sync_downlink": "downlink message ids and outcomes (ids are the centre's, not the person's)",
    "pairings": "device pairing codes waiting for approval (claim hashes, kind, device id)",
    "trigger_promotions": "which variant of a trigger version became the business rule, and when",
}


@dataclass(frozen=True)
class Person:
    """How to find one person's rows."""

    token: str
    visits: tuple[str, ...]  # linked anonymous ids
    digests: tuple[str, ...]  # keyed digests of the token and the visits

    def params(self) -> dict[str, str]:
        return {"user": self.token, "anon": json.dumps(list(self.visits)),
                "digests": json.dumps(list(self.digests))}  # fmt: skip


def existing(conn: sqlite3.Connection, tables: Sequence[PersonalTable] = PERSONAL_TABLES) -> list[PersonalTable]:
    """The personal tables this journal has (a feature not migrated has no table)."""
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [t for t in tables if t.table in present]
