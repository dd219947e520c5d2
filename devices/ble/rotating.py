"""Opted-in app presence without tracking: rotating iBeacon ids only the gateway can resolve.

At consent the store app and the gateway share a per-person *app key* (32 random bytes). The
app advertises an iBeacon with the store's app UUID whose major/minor carry

    rotating_id(window) = HMAC-SHA256(app_key, window.to_bytes(8, "big"))[:4]
    major = rotating_id[0:2], minor = rotating_id[2:4]         (big-endian)
    window = floor(unix_seconds / window_s)

A passer-by sees an unrelated 32-bit value each window and cannot link two windows without the
key. The gateway keeps, for the current window ± 1 (clock skew between phone and gateway), a map
from rotating id to customer token, rebuilt when the window changes; unknown ids are counted and
ignored. Collisions (two keys giving the same 32 bits in one window, ~n²/2³³) resolve to nobody.

The key store is its own table in the journal database (:data:`MIGRATIONS`): customer token and
key only, nothing else about the person; :meth:`AppKeyStore.forget` serves erasure.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable

import sqlite_utils

from edge.events import TOKEN_PATTERN
from edge.journal import Journal, Migration

__all__ = [
    "MIGRATIONS",
    "AppKeyStore",
    "RotatingIdResolver",
    "rotating_id",
    "major_minor",
    "window_index",
]

APP_KEY_BYTES = 32


def _app_keys_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TABLE devices_app_keys (token TEXT PRIMARY KEY, app_key BLOB NOT NULL, registered_ms INTEGER NOT NULL)"
    )


MIGRATIONS: tuple[Migration, ...] = (Migration("devices-0001-app-keys", _app_keys_v1),)


def window_index(unix_s: float, window_s: int) -> int:
    return int(unix_s // window_s)


def rotating_id(app_key: bytes, window: int) -> int:
    """The 32-bit id an app with ``app_key`` advertises during ``window``."""
    digest = hmac.new(app_key, window.to_bytes(8, "big", signed=True), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big")


def major_minor(app_key: bytes, window: int) -> tuple[int, int]:
    value = rotating_id(app_key, window)
    return value >> 16, value & 0xFFFF


class AppKeyStore:
    """Registered app keys, by customer token, in the journal's database."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self.version = 0  # bumped on every change so resolvers know to rebuild

    def register(self, token: str, app_key: bytes) -> None:
        if not TOKEN_PATTERN.match(token):
            raise ValueError("app keys are registered against a customer token (ct_…)")
        if len(app_key) != APP_KEY_BYTES:
            raise ValueError(f"an app key is {APP_KEY_BYTES} bytes")
        with self._journal.transaction() as conn:
            conn.execute(
                "INSERT INTO devices_app_keys VALUES (?, ?, ?) ON CONFLICT(token) DO UPDATE"
                " SET app_key = excluded.app_key, registered_ms = excluded.registered_ms",
                (token, app_key, int(time.time() * 1000)),
            )
        self.version += 1

    def forget(self, token: str) -> bool:
        with self._journal.transaction() as conn:
            removed = conn.execute("DELETE FROM devices_app_keys WHERE token = ?", (token,)).rowcount
        self.version += 1
        return removed > 0

    def items(self) -> list[tuple[str, bytes]]:
        with self._journal.connection() as conn:
            return [(r[0], bytes(r[1])) for r in conn.execute("SELECT token, app_key FROM devices_app_keys")]


class RotatingIdResolver:
    """Rotating id → customer token for the current window ± 1."""

    def __init__(
        self,
        keys: Callable[[], list[tuple[str, bytes]]],
        window_s: int,
        version: Callable[[], int] = lambda: 0,
    ) -> None:
        self._keys = keys
        self._version = version
        self.window_s = window_s
        self.unknown = 0  # ids heard that no registered key explains
        self._built_for: tuple[int, int] | None = None
        self._index: dict[int, str | None] = {}
        self._lock = threading.Lock()

    def resolve(self, major: int, minor: int, now_s: float) -> str | None:
        window = window_index(now_s, self.window_s)
        with self._lock:
            if self._built_for != (window, self._version()):
                self._rebuild(window)
            token = self._index.get((major << 16) | minor)
        if token is None:
            self.unknown += 1
        return token

    def _rebuild(self, window: int) -> None:
        index: dict[int, str | None] = {}
        for token, key in self._keys():
            for w in (window - 1, window, window + 1):
                rid = rotating_id(key, w)
                index[rid] = token if index.get(rid, token) == token else None  # collision: nobody
        self._index = index
        self._built_for = (window, self._version())
