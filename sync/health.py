"""Store health reports on ``cdp.status.{storeId}`` (stream ``CDP_STATUS``): wire format.

A store publishes one JSON object now and then (and right after applying a downlink message)::

    {"storeId": "s1", "at": 1796150000.0, "model": "2026.12.01-1", "offers": "cat-7",
     "decisions": 1532, "errors": 0, "latencyP99Ms": 4.1, "backlog": 0,
     "refused": {"ref": "m-2026.12.01-1", "detail": "swap_failed: …"}}

``decisions`` and ``errors`` are counters since the process started (``errors`` null when the
store does not measure them); ``refused`` is the latest downlink message the store refused (or
null). :class:`HealthReporter` is the store's loop that publishes them. The centre (:mod:`sync.rollout`, ``edge central
status``) reads the latest report per store. :func:`parse_health` takes untrusted bytes and
returns a :class:`StoreHealth` or raises ValueError naming what is wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edge.backoff import backoff_delay, raise_if_cancelled
from sync.errors import TransientSinkError

__all__ = ["HealthReporter", "StoreHealth", "encode_health", "parse_health", "status_subject"]

log = logging.getLogger(__name__)


def status_subject(store_id: str) -> str:
    return f"cdp.status.{store_id}"


@dataclass(frozen=True)
class StoreHealth:
    store_id: str
    at: float
    model: str | None = None
    offers: str | None = None
    decisions: int = 0
    errors: int | None = None  # None: this store does not measure decision errors
    latency_p99_ms: float | None = None
    backlog: int = 0
    refused_ref: str | None = None
    refused_detail: str | None = None


_WIRE = {"store_id": "storeId", "latency_p99_ms": "latencyP99Ms"}


def encode_health(health: StoreHealth) -> bytes:
    body: dict[str, Any] = {}
    for key, value in asdict(health).items():
        if key.startswith("refused_"):
            continue
        body[_WIRE.get(key, key)] = value
    body["refused"] = {"ref": health.refused_ref, "detail": health.refused_detail} if health.refused_ref else None
    return json.dumps(body, separators=(",", ":")).encode()


def _str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > 256):
        raise ValueError(f"{key} must be a string of at most 256 characters")
    return value


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


def parse_health(data: bytes, subject: str | None = None) -> StoreHealth:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("health report is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("health report is not an object")
    store = _str(body, "storeId")
    if not store:
        raise ValueError("storeId missing")
    if subject is not None and subject != status_subject(store):
        raise ValueError("storeId is not the subject's store")
    at = body.get("at")
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise ValueError("at must be a number (epoch seconds)")
    p99 = body.get("latencyP99Ms")
    if p99 is not None and (not isinstance(p99, int | float) or isinstance(p99, bool)
                            or not math.isfinite(p99) or p99 < 0):  # fmt: skip
        raise ValueError("latencyP99Ms must be a non-negative number or null")
    refused = body.get("refused")
    if refused is not None and not isinstance(refused, dict):
        raise ValueError("refused must be an object or null")
    refused = refused or {}
    return StoreHealth(
        store, float(at), _str(body, "model"), _str(body, "offers"), _count(body, "decisions"),
        None if body.get("errors") is None else _count(body, "errors"),
        None if p99 is None else float(p99), _count(body, "backlog"),
        _str(refused, "ref"), _str(refused, "detail"),
    )  # fmt: skip


class HealthReporter:
    """Publishes ``snapshot()`` every ``interval_s`` (and on :meth:`poke`) with the store's identity."""

    def __init__(
        self, store_id: str, servers: Sequence[str], credentials: str,
        snapshot: Callable[[], StoreHealth], interval_s: float,
    ) -> None:  # fmt: skip
        self.store_id, self.servers, self.credentials = store_id, list(servers), credentials
        self.snapshot, self.interval_s = snapshot, interval_s
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Report soon (after a downlink message was applied or refused)."""
        self._poked.set()

    async def run(self) -> None:
        # the NATS client is loaded only by a store that reports to a centre (a gateway without
        # a downlink never imports it: ~10 MB of resident memory on the box)
        import nats.errors

        from sync.nats_sink import close_quietly, connect

        attempt = 0
        while True:
            try:
                nc = await connect(self.servers, self.credentials, name=f"edge-health-{self.store_id}",
                                   store_id=self.store_id)  # fmt: skip
                try:
                    js = nc.jetstream(timeout=10)
                    while True:
                        raise_if_cancelled()  # a publish or wait_for that lost our cancellation
                        health = await asyncio.to_thread(self.snapshot)
                        await js.publish(status_subject(self.store_id), encode_health(health))
                        attempt = 0
                        self._poked.clear()
                        try:
                            async with asyncio.timeout(self.interval_s):
                                await self._poked.wait()
                        except TimeoutError:
                            pass
                finally:
                    await close_quietly(nc)
            except (TimeoutError, TransientSinkError, nats.errors.Error, OSError) as exc:
                raise_if_cancelled()
                log.warning("health report not sent: %s", exc)
                await asyncio.sleep(backoff_delay(attempt, cap_s=60))
                attempt += 1
