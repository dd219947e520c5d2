"""The gateway core's configuration sections (features contribute their own; see edge.schema)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.config import doc
from edge.guard import GuardConfig

__all__ = ["CONFIG_SECTIONS", "HttpConfig", "IngestConfig", "JournalConfig", "FeaturesConfig", "LogConfig",
           "MqttConfig", "StoreConfig"]  # fmt: skip

#: Feature packages the composition root can wire, in build order (later ones use earlier ones).
FEATURES = ("edge.model", "edge.decisioning", "edge.triggers", "devices", "sync")

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _store_id(value: str) -> str | None:
    return None if _ID.match(value) else "must be 1–63 of a-z, 0-9, '-', '_' (it is an MQTT topic level)"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port (0–65535; 0 picks a free one)"


def _positive(value: int | float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _url(value: str) -> str | None:
    return None if re.match(r"^mqtts?://[^/:]+(:\d+)?/?$", value) else "must look like mqtt://host:port"


@dataclass(frozen=True)
class StoreConfig:
    id: str = doc("demo-store", "This store's id: the MQTT topic level and `storeId` of every event.", _store_id)
    state_dir: Path = doc(
        Path("/var/lib/edge-gateway"),
        "Directory for the journal, broker files, secrets and keys (systemd StateDirectory).",
    )


@dataclass(frozen=True)
class JournalConfig:
    path: str = doc("", "Journal SQLite file; empty means `<store.state_dir>/journal.db`.")
    synchronous: Literal["full", "normal"] = doc(
        "full", "SQLite synchronous mode. `full` survives power cuts; `normal` only process crashes."
    )
    dead_letter_max: int = doc(10_000, "Rows kept in the dead-letter table (oldest go first).", _positive)
    retention_days: int = doc(
        395,
        "Days personal data is kept (events and every personal table: consent, profiles,"
        " exposures, redemptions, app keys, dead letters) before it is pruned.",
        _positive,
    )


@dataclass(frozen=True)
class MqttConfig:
    mode: Literal["managed", "external"] = doc(
        "managed",
        "`managed`: the gateway runs its own Mosquitto child on 127.0.0.1. "
        "`external`: connect to the broker at `mqtt.url` (e.g. the systemd edge-mosquitto unit).",
    )
    url: str = doc("mqtt://127.0.0.1:1883", "Broker URL in `external` mode.", _url)
    managed_port: int = doc(1883, "Port of the managed broker on 127.0.0.1 (0 picks a free one).", _port)
    mosquitto_binary: str = doc("mosquitto", "Mosquitto executable for `managed` mode.")
    client_id: str = doc("", "Gateway MQTT client id; empty means `edge-gateway-<store.id>`.")
    session_expiry_s: int = doc(
        604_800,
        "MQTT 5 session expiry: how long the broker queues events while the gateway is down.",
        _positive,
    )
    receive_maximum: int = doc(
        500,
        "Unacknowledged QoS 1 messages the broker may have in flight to the gateway; each is held in"
        " memory until its group commit.",
        _positive,
    )
    keepalive_s: int = doc(30, "MQTT keepalive in seconds.", _positive)
    max_queued_messages: int = doc(
        1_000_000, "Managed broker: messages queued per offline persistent session.", _positive
    )


@dataclass(frozen=True)
class HttpConfig:
    host: str = doc("127.0.0.1", "Address the HTTP API listens on.")
    port: int = doc(8080, "HTTP API port (0 picks a free one).", _port)
    max_body_bytes: int = doc(512_000, "Largest request body accepted (a 500 KB batch fits).", _positive)


@dataclass(frozen=True)
class IngestConfig:
    queue_max: int = doc(20_000, "Inputs waiting for the journal writer before backpressure.", _positive)
    max_batch: int = doc(2_000, "Most events in one group commit.", _positive)
    linger_ms: float = doc(
        1.0,
        "How long the journal writer waits for more events before a commit that is not full:"
        " larger group commits under load for at most this much added latency (0: none).",
        lambda v: None if 0 <= v <= 100 else "must be 0–100",
    )


@dataclass(frozen=True)
class FeaturesConfig:
    enabled: list[str] = doc(
        list(FEATURES),
        "Features the gateway builds (recommender, decisioning, triggers, store devices, CDP sync), always in that dependency order whatever the order here (edge/gateway.py); remove one to run without it.",
        lambda names: None if set(names) <= set(FEATURES) else f"known features: {', '.join(FEATURES)}",
    )


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = doc("info", "Log level.")


CONFIG_SECTIONS: dict[str, type] = {
    "store": StoreConfig,
    "journal": JournalConfig,
    "mqtt": MqttConfig,
    "http": HttpConfig,
    "ingest": IngestConfig,
    "features": FeaturesConfig,
    "guard": GuardConfig,
    "log": LogConfig,
}
