"""The right of access: everything the store holds about a person, as one JSON document.

:func:`export_person` reads every table of :data:`~edge.decisioning.personal.PERSONAL_TABLES`
with the same query erasure uses — the person's token, the anonymous visit ids they identified
in, and the keyed digests a dead letter keeps — in one read transaction, so the document is one
consistent snapshot. Each row is given as stored (its ``rowid`` as ``_rowid``), with JSON columns
(an event's body, a profile's items, categories and purchases) parsed and binary columns (an app
key) in base64. Served as ``GET /v1/customers/{userId}/export`` (ops) and ``edge export``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from edge.decisioning.erasure import Eraser
from edge.decisioning.personal import existing
from edge.events import TOKEN_PATTERN, iso_ms
from edge.journal import Journal

__all__ = ["export_person"]

#: Columns that hold JSON text, parsed in the export.
_JSON_COLUMNS = {
    "events": ("body",),
    "profiles": ("items", "categories", "purchases"),
    "trigger_firings": ("offers", "goal"),
}


def export_person(journal: Journal, eraser: Eraser, token: str) -> dict[str, Any]:
    if not TOKEN_PATTERN.match(token):
        raise ValueError("export needs a customer token (ct_…); tokenise raw identifiers first")
    tables: dict[str, list[dict[str, Any]]] = {}
    conn = journal.reader()  # one WAL snapshot, taken beside the writer: ingest goes on
    conn.execute("BEGIN")
    try:
        person = eraser.person(token, snapshot=True)
        for table in existing(conn):
            cursor = conn.execute(
                f"SELECT rowid AS _rowid, * FROM {table.table} WHERE {table.subject} ORDER BY rowid",
                person.params(),
            )
            names = [c[0] for c in cursor.description]
            parsed = _JSON_COLUMNS.get(table.table, ())
            tables[table.table] = [
                {name: _value(name in parsed, value) for name, value in zip(names, row, strict=True)}
                for row in cursor.fetchall()
            ]
    finally:
        conn.execute("COMMIT")
    return {
        "userId": token,
        "visits": list(person.visits),
        "suppressed": eraser.is_suppressed(token),
        "exportedAt": iso_ms(time.time_ns() // 1_000_000),
        "tables": tables,
    }


def _value(is_json: bool, value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if is_json and isinstance(value, str):
        return json.loads(value)
    return value
