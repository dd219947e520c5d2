"""A whole store for the privacy tests: a real gateway (managed Mosquitto on 127.0.0.1, journal,
HTTP, the shipped model, decisioning, sync) whose HTTP sink sends to the Segment-style receiver
of ``body_receiver.py``, started on a free port and stopped by PID."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from support.gateway import (
    GatewayHandle,
    device_client,
    make_config,
    register,
    running_gateway,
    topic,
    wait_until,
)
from support.services import free_port, wait_for_port

from edge.registry import Credentials

RECEIVER = Path(__file__).with_name("body_receiver.py")
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Receiver:
    url: str
    db: Path
    process: subprocess.Popen[bytes]

    def bodies(self, where: str = "1", *args: Any) -> list[tuple[str, str | None, str]]:
        """(body JSON, sentAt, messageId) of every event the CDP accepted."""
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(f"SELECT body, sent_at, message_id FROM bodies WHERE {where} ORDER BY id", args)
            return [(r[0], r[1], r[2]) for r in rows]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextmanager
def receiver(directory: Path) -> Iterator[Receiver]:
    port = free_port()
    db = directory / f"cdp-{port}.db"
    with open(directory / f"cdp-{port}.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--port", str(port), "--db", str(db)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
    handle = Receiver(f"http://127.0.0.1:{port}", db, process)
    try:
        wait_for_port(port, proc=process)
        yield handle
    finally:
        handle.stop()


@dataclass
class Store:
    gateway: GatewayHandle
    cdp: Receiver
    devices: dict[str, Credentials]
    state_dir: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.http, timeout=30)

    def auth(self, device: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.devices[device].http_token}"}

    def post_events(self, client: httpx.Client, device: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        reply = client.post("/v1/events", headers=self.auth(device), json={"batch": events})
        assert reply.status_code in (200, 400), reply.text
        return dict(reply.json())

    def synced(self) -> bool:
        """True when the HTTP sink's cursor has reached the journal's last event."""
        journal = self.gateway.gateway.context.journal  # type: ignore[union-attr]
        return journal.backlog("http") == 0


@contextmanager
def live_store(
    tmp_path: Path, features: tuple[str, ...] = ("edge.model", "edge.decisioning", "sync"), **sections: dict[str, Any]
) -> Iterator[Store]:
    with receiver(tmp_path) as cdp:
        state = tmp_path / "state"
        config = make_config(
            state,
            sync={"idle_poll_s": 0.05},
            sync_http={"enabled": True, "base_url": cdp.url, "write_key": "test-key", "gzip": True},
            offers={"reload_seconds": 30.0},
            **sections,
        )
        devices = register(config, [("kiosk", "kiosk-1"), ("kiosk", "kiosk-2"), ("ops", "ops-1")])
        with running_gateway(config, features=features) as handle:
            yield Store(handle, cdp, devices, state)


class MqttDevice:
    """A paho MQTT 5 device publishing QoS 1 events. The PUBACK comes from the broker, not
    the journal: :meth:`send` returns once the broker has the message and, with
    ``committed=True``, once every messageId sent is in the gateway's journal."""

    def __init__(self, store: Store, device: str, client: mqtt.Client) -> None:
        self.store = store
        self.topic = topic(store.gateway, store.devices[device], "events")
        self.client = client
        self.lock = threading.Lock()

    def send(self, events: list[dict[str, Any]], *, committed: bool = False, timeout: float = 30) -> None:
        with self.lock:
            info = self.client.publish(self.topic, json.dumps(events).encode(), qos=1)
        info.wait_for_publish(timeout)
        assert info.is_published()
        if committed:
            journal = self.store.gateway.gateway.context.journal  # type: ignore[union-attr]
            ids = [e["messageId"] for e in events]
            wait_until(lambda: all(journal.get(m) is not None for m in ids), timeout=timeout, interval=0.002)


@contextmanager
def mqtt_device(store: Store, device: str) -> Iterator[MqttDevice]:
    with device_client(store.gateway, store.devices[device]) as client:
        yield MqttDevice(store, device, client)
