"""Configuration sections of the sync package (merged into the gateway schema by edge.schema).

Every sink is disabled by default, so a plain gateway starts offline and simply journals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import doc

__all__ = [
    "CONFIG_SECTIONS",
    "CentralConfig",
    "DownlinkConfig",
    "HttpSinkConfig",
    "NatsSinkConfig",
    "SyncConfig",
]


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _batch_events(value: Any) -> str | None:
    return None if 1 <= value <= 2500 else "must be between 1 and 2500 (Segment batch limit)"


def _batch_bytes(value: Any) -> str | None:
    return None if 1024 <= value <= 500 * 1024 else "must be between 1024 and 512000 bytes"


def _public_key(value: Any) -> str | None:
    import base64
    import binascii

    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return None if len(raw) == 32 else "must be base64 of a 32-byte Ed25519 public key (or empty)"


def _nats_urls(value: Any) -> str | None:
    bad = [u for u in value if not u.startswith(("nats://", "tls://"))]
    return f"not nats:// or tls:// URLs: {bad}" if bad else None


@dataclass(frozen=True)
class SyncConfig:
    batch_events: int = doc(2500, "Most events in one batch to a sink (Segment allows 2,500).", _batch_events)
    batch_bytes: int = doc(500 * 1024, "Most bytes of event JSON in one batch (Segment allows 500 KB).", _batch_bytes)
    quota_bytes: int = doc(
        512 * 1024 * 1024,
        "Outbox quota: bytes of events not yet sent by the slowest enabled sink. Past it the"
        " lowest-value events are dropped oldest first (see sync/README.md); 0 disables the quota.",
        _non_negative,
    )
    quota_low_water: float = doc(
        0.9,
        "After a drop, the outbox is trimmed to this fraction of the quota (hysteresis).",
        lambda v: None if 0.1 <= v <= 1.0 else "must be between 0.1 and 1.0",
    )
    quota_check_s: float = doc(30.0, "Seconds between outbox quota checks.", _positive)
    idle_poll_s: float = doc(0.5, "Seconds a sink waits for new events when it is caught up.", _positive)
    backoff_base_s: float = doc(0.5, "First retry delay after a transient sink failure.", _positive)
    backoff_cap_s: float = doc(60.0, "Longest retry delay (a server's Retry-After may exceed it).", _positive)


@dataclass(frozen=True)
class HttpSinkConfig:
    enabled: bool = doc(False, "Send events to a Segment-compatible batch endpoint.")
    base_url: str = doc("", "Base URL of the endpoint; events go to POST {base_url}/v1/batch.")
    write_key: str = doc("", "Write key, sent as the Basic-auth user name with an empty password.")
    timeout_s: float = doc(15.0, "Timeout of one batch request (connect, write, read).", _positive)
    gzip: bool = doc(True, "Compress request bodies with gzip.")
    on_auth_error: str = doc(
        "pause",
        "What a 401/403 does: 'pause' keeps the events and retries every auth_retry_s (a wrong"
        " write key must not destroy the backlog); 'dead_letter' dead-letters the batch.",
        lambda v: None if v in ("pause", "dead_letter") else "must be 'pause' or 'dead_letter'",
    )
    auth_retry_s: float = doc(300.0, "Seconds between retries while the write key is refused.", _positive)


@dataclass(frozen=True)
class NatsSinkConfig:
    enabled: bool = doc(False, "Publish events to NATS JetStream.")
    servers: list[str] = doc(["nats://127.0.0.1:4222"], "NATS server URLs (all nodes of a cluster).", _nats_urls)
    stream: str = doc(
        "CDP_EVENTS",
        "JetStream stream holding cdp.events.> (the centre creates it; the store only publishes).",
    )
    ack_timeout_s: float = doc(10.0, "Seconds to wait for all publish acks of one batch.", _positive)
    credentials: str = doc(
        "",
        "Path of this store's NATS identity: an nkey seed file from `edge central identities`"
        " (<fleet>/stores/<id>.nk) or a .creds file; empty for none.",
    )


@dataclass(frozen=True)
class DownlinkConfig:
    enabled: bool = doc(False, "Consume cdp.downlink.{storeId} (consent, erasure, offers, models).")
    servers: list[str] = doc(["nats://127.0.0.1:4222"], "NATS server URLs of the downlink.", _nats_urls)
    stream: str = doc(
        "CDP_DOWNLINK",
        "JetStream stream holding cdp.downlink.>; the centre creates it and the store's consumer store-{storeId}.",
    )
    credentials: str = doc(
        "",
        "Path of this store's NATS identity (nkey seed or .creds file), usually the same file"
        " as sync_nats.credentials; empty for none.",
    )
    model_public_key: str = doc(
        "",
        "Ed25519 public key (base64 of the 32 raw bytes) that must have signed model manifests"
        " and offer catalogs; empty refuses every model update (and accepts unsigned offers).",
        _public_key,
    )
    model_dir: Path = doc(
        Path("models/incoming"), "Where verified model files are unpacked (relative to the state dir)."
    )
    max_message_bytes: int = doc(8 * 1024 * 1024, "Largest downlink message accepted.", _positive)
    status_interval_s: float = doc(
        30.0,
        "Seconds between health reports on cdp.status.{storeId} (versions, decisions, p99,"
        " backlog) for rollouts and `edge central status`.",
        _positive,
    )


@dataclass(frozen=True)
class CentralConfig:
    servers: list[str] = doc(["nats://127.0.0.1:4222"], "NATS server URLs of the backbone.", _nats_urls)
    postgres: str = doc("", "PostgreSQL connection string (libpq DSN or URL).")
    durable: str = doc("central", "Durable pull consumer name over cdp.events.>.")
    credentials: str = doc(
        "",
        "Path of the centre's NATS identity (<fleet>/central.nk or a .creds file); empty for none.",
    )
    replicas: int = doc(3, "Replicas of every backbone stream (1 only for a single test server).", _positive)
    events_max_age_days: float = doc(
        7.0,
        "How long CDP_EVENTS keeps an event: the longest central-job outage tolerated before"
        " events expire unloaded. Also bounds an erasure's stream scan.",
        _positive,
    )
    events_max_bytes: int = doc(
        100 * 1024**3,
        "Size limit of CDP_EVENTS; when full it refuses publishes (discard new) and"
        " the stores' outboxes keep the events.",
        _positive,
    )
    duplicate_window_s: float = doc(
        3600.0,
        "JetStream de-duplication window on Nats-Msg-Id (memory grows with it; beyond it"
        " the PostgreSQL primary key de-duplicates). See sync/README.md.",
        _positive,
    )
    downlink_max_age_days: float = doc(
        90.0, "How long a downlink message waits for a store that is offline.", _positive
    )
    retention_months: int = doc(
        13, "Monthly cdp_events partitions kept in PostgreSQL; older ones are dropped.", _positive
    )
    metrics_port: int = doc(
        0, "Port of the central job's Prometheus /metrics on 127.0.0.1; 0 disables it.", _non_negative
    )
    ack_wait_s: float = doc(
        60.0,
        "How long the shared consumer waits for a worker's ack before redelivering to"
        " another worker (a killed worker's batch comes back after this).",
        _positive,
    )
    fetch_batch: int = doc(500, "Messages fetched and committed to PostgreSQL per transaction.", _positive)
    forward_url: str = doc("", "Optional Segment-compatible endpoint to forward every event to.")
    forward_write_key: str = doc("", "Write key of forward_url.")
    lag_report_s: float = doc(10.0, "Seconds between consumer-lag reports (log and status).", _positive)


CONFIG_SECTIONS: dict[str, type] = {
    "sync": SyncConfig,
    "sync_http": HttpSinkConfig,
    "sync_nats": NatsSinkConfig,
    "downlink": DownlinkConfig,
    "central": CentralConfig,
}
