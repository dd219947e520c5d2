"""The central PostgreSQL schema: ``cdp_events`` partitioned by month, with retention.

``cdp_events`` is ``PARTITION BY RANGE (received_month)``, the first day of the month of the
event's ``receivedAt`` (set by the gateway at ingest and journaled, so every redelivery of a
message falls in the same partition). The primary key ``(message_id, received_month)`` is
therefore still the de-duplication key. A month's partition ``cdp_events_yYYYYmMM`` is created
the first time an event of that month is loaded (under an advisory lock, so concurrent workers
do not race); :func:`drop_expired` drops the partitions older than ``retention_months``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import psycopg

__all__ = ["SCHEMA", "PartitionSet", "drop_expired", "month_of", "oldest_kept"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS cdp_events (
    message_id text NOT NULL,
    received_month date NOT NULL,
    store_id text NOT NULL,
    type text NOT NULL,
    event text,
    user_id text,
    anonymous_id text,
    "timestamp" text,
    received_at text,
    properties jsonb NOT NULL,
    context jsonb NOT NULL,
    body jsonb NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, received_month)
) PARTITION BY RANGE (received_month);
CREATE INDEX IF NOT EXISTS cdp_events_user ON cdp_events (user_id);
CREATE TABLE IF NOT EXISTS cdp_consent (
    user_id text PRIMARY KEY, preferences jsonb NOT NULL, store_id text NOT NULL,
    message_id text NOT NULL, updated_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS cdp_stores (store_id text PRIMARY KEY, last_seen timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS cdp_erasure_requests (
    request_id text PRIMARY KEY, user_id text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cdp_erasure_user ON cdp_erasure_requests (user_id);
CREATE TABLE IF NOT EXISTS cdp_erasure_targets (
    request_id text NOT NULL, store_id text NOT NULL, PRIMARY KEY (request_id, store_id)
);
CREATE TABLE IF NOT EXISTS cdp_erasure_confirmations (
    request_id text NOT NULL, store_id text NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, store_id)
);
CREATE TABLE IF NOT EXISTS cdp_sync_drops (
    message_id text PRIMARY KEY, store_id text NOT NULL, drops jsonb NOT NULL,
    reported_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS cdp_rejects (
    id bigserial PRIMARY KEY, subject text NOT NULL, reason text NOT NULL, excerpt text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"""

_MONTH = re.compile(r"^(\d{4})-(\d{2})-")
_PARTITION = re.compile(r"^cdp_events_y(\d{4})m(\d{2})$")
_LOCK = 0x63647065  # pg_advisory_xact_lock key of partition maintenance ("cdpe")


def month_of(received_at: object) -> dt.date | None:
    """First day of the month of an ISO-8601 ``receivedAt``; None if it is not one."""
    if not isinstance(received_at, str) or not (m := _MONTH.match(received_at)):
        return None
    year, month = int(m[1]), int(m[2])
    return dt.date(year, month, 1) if 1970 <= year <= 9999 and 1 <= month <= 12 else None


def _next(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _name(month: dt.date) -> str:
    return f"cdp_events_y{month.year:04d}m{month.month:02d}"


class PartitionSet:
    """The months that have a partition, as this process knows them."""

    def __init__(self) -> None:
        self._known: set[dt.date] = set()

    async def ensure(self, cur: psycopg.AsyncCursor[Any], months: set[dt.date]) -> None:
        """Create the missing partitions inside the caller's transaction."""
        missing = months - self._known
        if not missing:
            return
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        await cur.execute("SELECT relname FROM pg_class WHERE relname LIKE 'cdp\\_events\\_y%%'")
        self._known |= {dt.date(int(m[1]), int(m[2]), 1)
                        for (name,) in await cur.fetchall() if (m := _PARTITION.match(name))}  # fmt: skip
        for month in sorted(missing - self._known):
            await cur.execute(
                f"CREATE TABLE IF NOT EXISTS {_name(month)} PARTITION OF cdp_events"
                f" FOR VALUES FROM ('{month.isoformat()}') TO ('{_next(month).isoformat()}')"
            )
            self._known.add(month)

    def forget(self) -> None:
        """After another worker dropped partitions: look them up again next time."""
        self._known.clear()


def oldest_kept(retention_months: int, today: dt.date | None = None) -> dt.date:
    """The first month still kept: this month and the ``retention_months - 1`` before it."""
    today = today or dt.datetime.now(dt.UTC).date()
    index = today.year * 12 + today.month - 1 - (retention_months - 1)
    return dt.date(index // 12, index % 12 + 1, 1)


async def drop_expired(
    pg: psycopg.AsyncConnection[Any], retention_months: int, today: dt.date | None = None
) -> list[str]:
    """Drop partitions of months before :func:`oldest_kept`; returns their names."""
    cutoff = oldest_kept(retention_months, today)
    dropped = []
    async with pg.cursor() as cur:
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        await cur.execute("SELECT relname FROM pg_class WHERE relname LIKE 'cdp\\_events\\_y%%'")
        for (name,) in await cur.fetchall():
            m = _PARTITION.match(name)
            if m and dt.date(int(m[1]), int(m[2]), 1) < cutoff:
                await cur.execute(f"DROP TABLE {name}")
                dropped.append(name)
    await pg.commit()
    return sorted(dropped)
