"""A Segment-compatible batch receiver for tests and the benchmark (raw ASGI under uvicorn).

``POST /v1/batch`` (gzip or plain, Basic auth with the write key as user name) stores every
received messageId in SQLite — duplicates included, so a test can count them — and answers 200
only after the commit. ``POST /_control`` with ``{"status": 503, "count": 3, "retry_after": "1"}``
makes the next ``count`` batch requests fail with ``status``; ``{"reject_ids": [...]}`` answers
400 to any batch containing one of those ids. ``GET /_stats`` returns counts.

Run: ``python -m tests.sync.receiver --port P --db PATH --write-key KEY``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sqlite3
from typing import Any

Scope = dict[str, Any]


class Receiver:
    def __init__(self, db_path: str, write_key: str, max_bytes: int = 512_000) -> None:
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS receipts (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL,"
            " user_id TEXT, event TEXT, sent_at TEXT)"
        )
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self.max_bytes = max_bytes
        self.fail: dict[str, Any] = {"count": 0}
        self.reject_ids: set[str] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, payload, headers = self.handle(scope, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *headers]})  # fmt: skip
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    def handle(self, scope: Scope, body: bytes) -> tuple[int, Any, list[tuple[bytes, bytes]]]:
        path, method = scope["path"], scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path == "/_stats":
            total, distinct = self.db.execute("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM receipts").fetchone()
            return 200, {"receipts": total, "distinct": distinct}, []
        if path == "/_control" and method == "POST":
            control = json.loads(body)
            if "reject_ids" in control:
                self.reject_ids = set(control["reject_ids"])
            if "status" in control:
                self.fail = control
            return 200, {"ok": True}, []
        if path != "/v1/batch" or method != "POST":
            return 404, {"error": "not found"}, []
        if headers.get("authorization") != self.auth:
            return 401, {"error": "bad write key"}, []
        if self.fail.get("count", 0) > 0:
            self.fail["count"] -= 1
            retry_after = self.fail.get("retry_after")
            extra = [(b"retry-after", str(retry_after).encode())] if retry_after else []
            return int(self.fail["status"]), {"error": "injected"}, extra
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if len(body) > self.max_bytes:
            return 413, {"error": "batch too large"}, []
        try:
            data = json.loads(body)
            batch = data["batch"]
            sent_at = data.get("sentAt")
            rows = [(m["messageId"], m.get("userId"), m.get("event"), sent_at) for m in batch]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "malformed batch"}, []
        if self.reject_ids and any(r[0] in self.reject_ids for r in rows):
            return 400, {"error": "rejected event"}, []
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO receipts (message_id, user_id, event, sent_at) VALUES (?,?,?,?)", rows)
        self.db.execute("COMMIT")
        return 200, {"success": True}, []


def main(receiver: type[Receiver] | None = None) -> None:
    """Serve ``receiver`` (default :class:`Receiver`) on 127.0.0.1 as the command line says."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--write-key", default="test-key")
    args = parser.parse_args()
    uvicorn.run((receiver or Receiver)(args.db, args.write_key), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False, lifespan="on")  # fmt: skip


if __name__ == "__main__":
    main()
