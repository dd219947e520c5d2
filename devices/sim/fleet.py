"""The fleet file ``edge demo`` writes: broker address and each simulated device's credentials.

{"store_id": "demo-store", "broker": {"host": "127.0.0.1", "port": 1884},
 "http": "http://127.0.0.1:8080",
 "devices": [{"kind": "kiosk", "device_id": "kiosk-1", "mqtt_password": "...", "http_token": "..."}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Fleet", "FleetDevice", "load_fleet"]


@dataclass(frozen=True)
class FleetDevice:
    kind: str
    device_id: str
    mqtt_password: str
    http_token: str


@dataclass(frozen=True)
class Fleet:
    store_id: str
    broker_host: str
    broker_port: int
    http: str
    devices: tuple[FleetDevice, ...]


def load_fleet(path: Path) -> Fleet:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        devices = tuple(
            FleetDevice(d["kind"], d["device_id"], d.get("mqtt_password", ""), d.get("http_token", ""))
            for d in doc["devices"]
        )
        return Fleet(doc["store_id"], doc["broker"]["host"], int(doc["broker"]["port"]), doc.get("http", ""), devices)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"fleet file {path} is unreadable or incomplete ({type(exc).__name__}: {exc}); run `edge demo` to write one"
        ) from exc
