"""``edge demo``: the gateway, a managed broker and a simulated store, all on 127.0.0.1.

The demo registers a small device fleet (kiosks, a display, a tablet, a POS, an ops token),
writes their credentials to ``<state>/demo/fleet.json`` (mode 0600, for the simulator and for
you to try the API with), starts the gateway and drives it with the store simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

from edge import schema
from edge.broker import free_port
from edge.config import Config
from edge.gateway import Gateway
from edge.registry import DeviceRegistry

__all__ = ["DEMO_FLEET", "demo_config", "register_fleet", "run_demo"]

DEMO_FLEET = (
    ("kiosk", "kiosk-1"),
    ("kiosk", "kiosk-2"),
    ("display", "display-1"),
    ("tablet", "tablet-1"),
    ("pos", "pos-1"),
    ("ops", "ops-1"),
)


def _port_or_free(port: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def demo_config(state_dir: Path, http_port: int, extra: dict[str, dict[str, Any]] | None = None) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "store": {"id": "demo-store", "state_dir": str(state_dir.resolve())},
        "mqtt": {"mode": "managed", "managed_port": free_port()},
        "http": {"host": "127.0.0.1", "port": _port_or_free(http_port)},
        # everything on 127.0.0.1: plain loopback links (a store box uses TLS: systemd/gateway.toml)
        "broker": {"interfaces": [], "plaintext_hosts": ["127.0.0.1"], "plaintext_port": free_port()},
        "tls": {"http": False},
        # the demo store's trigger library (edge/triggers/demo_triggers.toml): triggers fire in the log
        "triggers": {"path": str(Path(__file__).with_name("triggers") / "demo_triggers.toml")},
    }
    for section, values in (extra or {}).items():
        raw.setdefault(section, {}).update(values)
    from edge.config import parse_config

    return parse_config(raw, schema.config_schema(), os.environ)


def register_fleet(config: Config) -> list[dict[str, str]]:
    """(Re-)issue credentials for the demo fleet; returns them for the fleet file."""
    fleet = []
    with schema.open_journal(config) as journal:
        registry = DeviceRegistry(journal)
        for kind, device_id in DEMO_FLEET:
            if registry.get(device_id) is not None:
                registry.remove(device_id)
            creds = registry.add(kind, device_id)
            fleet.append({"kind": kind, "device_id": device_id, "mqtt_password": creds.mqtt_password,
                          "http_token": creds.http_token})  # fmt: skip
    return fleet


def write_fleet_file(path: Path, gateway: Gateway, fleet: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    host, port = gateway.device_broker_address
    doc = {"store_id": gateway.config.store.id, "broker": {"host": host, "port": port},
           "http": gateway.http_url, "devices": fleet}  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)


async def run_demo(args: argparse.Namespace) -> int:
    config = demo_config(args.state_dir, args.http_port, _simulated_hardware())
    fleet = register_fleet(config)
    gateway = Gateway(config)
    runner = asyncio.create_task(gateway.run())
    ready = asyncio.create_task(gateway.ready.wait())
    await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        return runner.result() or 1
    fleet_file = Path(config.store.state_dir) / "demo" / "fleet.json"
    write_fleet_file(fleet_file, gateway, fleet)
    host, port = gateway.device_broker_address
    print(f"""
Edge gateway demo is running (store {config.store.id!r}).
  HTTP API      {gateway.http_url}          (OpenAPI: {gateway.http_url}/docs)
  health        {gateway.http_url}/healthz  {gateway.http_url}/readyz
  metrics       {gateway.http_url}/metrics  (Authorization: Bearer <ops-1 http_token>)
  MQTT broker   mqtt://{host}:{port}         (topics retail/v1/{config.store.id}/…)
  credentials   {fleet_file}
  journal       EDGE_STORE__STATE_DIR={config.store.state_dir} edge journal stats
Press Ctrl-C to stop.
""", flush=True)  # fmt: skip
    simulation = asyncio.create_task(_simulate(gateway, fleet_file, args))

    def stop() -> None:  # the simulated devices leave first, then the gateway stops
        simulation.cancel()
        simulation.add_done_callback(lambda _task: gateway.request_stop())

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if args.duration:
        loop.call_later(args.duration, stop)
    await runner
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await simulation
    return 0


def _simulated_hardware() -> dict[str, dict[str, Any]]:
    """Config overrides that switch the device adapters to their simulated sources."""
    try:
        from devices.sim import DEMO_CONFIG
    except ImportError:
        return {}
    return dict(DEMO_CONFIG)


async def _simulate(gateway: Gateway, fleet_file: Path, args: argparse.Namespace) -> None:
    from devices.sim import run_demo_store

    await run_demo_store(gateway.features.devices, fleet_file, speed=args.speed, seed=args.seed)
