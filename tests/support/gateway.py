"""Run a real gateway (managed Mosquitto, journal, MQTT, HTTP) in a thread for a test."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge import schema
from edge.config import Config, parse_config
from edge.gateway import Gateway
from edge.registry import Credentials, DeviceRegistry
from support.paho import close_client

from .emulation import scaled

__all__ = ["GatewayHandle", "device_client", "make_config", "register", "running_gateway"]


def make_config(state_dir: Path, **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "store": {"id": "s1", "state_dir": str(state_dir)},
        "mqtt": {"mode": "managed", "managed_port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        # loopback only: a plaintext device listener on 127.0.0.1 and plain HTTP (tests of the store
        # network's TLS links configure broker.interfaces and tls.http themselves)
        "broker": {"interfaces": [], "plaintext_hosts": ["127.0.0.1"], "plaintext_port": 0},
        "tls": {"http": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return parse_config(raw, schema.config_schema(), {})


def register(config: Config, devices: Sequence[tuple[str, str]]) -> dict[str, Credentials]:
    with schema.open_journal(config) as journal:
        registry = DeviceRegistry(journal)
        return {device_id: registry.add(kind, device_id) for kind, device_id in devices}


@dataclass
class GatewayHandle:
    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    config: Config

    @property
    def http(self) -> str:
        return self.gateway.http_url

    @property
    def broker(self) -> tuple[str, int]:
        """Where devices connect (the plaintext loopback device listener in these tests)."""
        return self.gateway.device_broker_address

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(scaled(timeout))


@contextmanager
def running_gateway(config: Config, features: tuple[str, ...] = ()) -> Iterator[GatewayHandle]:
    loop = asyncio.new_event_loop()
    gateway_box: dict[str, Any] = {}
    failed: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def go() -> None:
            gateway = Gateway(config, enabled=features)
            gateway_box["g"] = gateway
            await gateway.run()

        try:
            loop.run_until_complete(go())
        except BaseException as exc:  # surfaced to the test below
            failed.append(exc)
        finally:  # as asyncio.run ends: what is left is cancelled and run out before the loop closes
            leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftover:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())

    thread = threading.Thread(target=main, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + scaled(30)
    while not ("g" in gateway_box and gateway_box["g"].ready.is_set()):
        if failed:
            raise failed[0]
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not become ready")
        time.sleep(0.02)
    gateway = gateway_box["g"]
    handle = GatewayHandle(gateway, loop, config)
    wait_until(lambda: gateway.context is not None and gateway.context.publisher.connected.is_set())  # type: ignore[union-attr]
    try:
        yield handle
    finally:
        loop.call_soon_threadsafe(gateway.request_stop)
        thread.join(scaled(30))
        loop.close()
        if failed:
            raise failed[0]


def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` for up to ``timeout`` native seconds (stretched under emulation)."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {limit:g} s")
        time.sleep(interval)


@contextmanager
def device_client(handle: GatewayHandle, creds: Credentials) -> Iterator[mqtt.Client]:
    """A connected paho MQTT 5 client logged in as the device."""
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-{creds.device_id}-{time.monotonic_ns()}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(creds.mqtt_username, creds.mqtt_password)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    host, port = handle.broker
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(scaled(10)):
        raise TimeoutError("device could not connect")
    try:
        yield client
    finally:
        close_client(client)


def topic(handle: GatewayHandle, creds: Credentials, leaf: str) -> str:
    return f"retail/v1/{handle.config.store.id}/{creds.kind}/{creds.device_id}/{leaf}"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
