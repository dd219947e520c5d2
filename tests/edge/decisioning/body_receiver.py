"""The Segment-style receiver of tests/sync, keeping every event body it accepts too.

The privacy tests need what the CDP was sent, byte for byte (a token or a unique property value
in any field), not only the messageIds: each accepted batch's events are stored as JSON text in
``bodies`` next to the receiver's own ``receipts``. Run as
``python tests/edge/decisioning/body_receiver.py --port P --db PATH``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sync"))

from sync_receiver import Receiver, Scope, main  # noqa: E402


class BodyReceiver(Receiver):
    def __init__(self, db_path: str, write_key: str) -> None:
        super().__init__(db_path, write_key)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL,"
            " event TEXT, sent_at TEXT, body TEXT NOT NULL)"
        )

    def handle(self, scope: Scope, body: bytes) -> tuple[int, Any, list[tuple[bytes, bytes]]]:
        status, payload, headers = super().handle(scope, body)
        if status == 200 and scope["path"] == "/v1/batch":
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            data = json.loads(body)
            self.db.executemany(
                "INSERT INTO bodies (message_id, event, sent_at, body) VALUES (?,?,?,?)",
                [(m["messageId"], m.get("event"), data.get("sentAt"), json.dumps(m)) for m in data["batch"]],
            )
        return status, payload, headers


if __name__ == "__main__":
    main(BodyReceiver)
