"""``edge central status``: the fleet as the centre sees it.

Per store: its latest health report (age, model and offers versions, outbox backlog, decisions,
errors, p99) and, with PostgreSQL configured, when the central job last loaded one of its
events; for the centre: the shared consumer's backlog (messages not yet loaded).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import nats.js.errors
import psycopg

from sync.backbone import EVENTS_STREAM
from sync.config import CentralConfig
from sync.nats_sink import connect
from sync.rollout import read_health

__all__ = ["fleet_status"]


async def fleet_status(config: CentralConfig, stores: Sequence[str]) -> dict[str, Any]:
    nc = await connect(config.servers, config.credentials, name="edge-central-status")
    try:
        js = nc.jetstream(timeout=10)
        health = await read_health(js, stores)
        try:
            info = await js.consumer_info(EVENTS_STREAM, config.durable)
            backlog: int | None = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        except nats.js.errors.NotFoundError:
            backlog = None
    finally:
        await nc.close()
    loaded: dict[str, float] = {}
    if config.postgres:
        async with await psycopg.AsyncConnection.connect(config.postgres) as pg:
            cur = await pg.execute("SELECT store_id, extract(epoch FROM now() - last_seen) FROM cdp_stores")
            loaded = {store: float(age) for store, age in await cur.fetchall()}
    now = time.time()
    rows = []
    for store in stores:
        row: dict[str, Any] = {"store": store, "last_loaded_age_s": _round(loaded.get(store))}
        if store in health:
            h = health[store][1]
            row |= {"last_report_age_s": round(max(0.0, now - h.at), 1), "model": h.model,
                    "offers": h.offers, "backlog": h.backlog, "decisions": h.decisions,
                    "errors": h.errors, "latency_p99_ms": h.latency_p99_ms,
                    "refused": h.refused_ref}  # fmt: skip
        else:
            row["last_report_age_s"] = None
        rows.append(row)
    return {
        "stores": rows,
        "central_backlog": backlog,
        "silent": [s for s in stores if s not in health],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
