"""The ``edge`` command: a thin layer over the library (each command a few lines).

Feature packages add their own commands through ``add_commands(subparsers)``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge import schema
from edge.config import DEFAULT_CONFIG, Config, config_file
from edge.errors import EdgeError

__all__ = ["build_parser", "main"]

COMMAND_MODULES = ("models.cli", "edge.decisioning.cli", "edge.triggers.cli", "edge.simulate", "sync.cli")


def load_config_arg(path: Path | None) -> Config:
    """``--config`` if given, else $EDGE_CONFIG, else /etc/edge-gateway/gateway.toml if present."""
    return schema.load(config_file(path))


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="gateway TOML file (default: $EDGE_CONFIG or "
                        f"{DEFAULT_CONFIG} if present, else built-in defaults)")  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    from edge.gateway import Gateway

    config = load_config_arg(args.config)
    _logging(config.log.level)
    asyncio.run(Gateway(config).run())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    _logging("info")
    return asyncio.run(run_demo(args))


def cmd_config_check(args: argparse.Namespace) -> int:
    from edge.listeners import check

    try:
        errors, warnings = check(schema.load(args.path))
    except EdgeError as exc:
        errors, warnings = getattr(exc, "errors", [("<file>", str(exc))]), []
    for key, message in warnings:
        print(f"warning: {key}: {message}", file=sys.stderr)
    for key, message in errors:
        print(f"{key}: {message}", file=sys.stderr)
    if errors:
        return 1
    print(f"{args.path}: ok")
    return 0


def cmd_config_reference(_args: argparse.Namespace) -> int:
    from edge.config import section_keys

    print(render_config_reference(section_keys(schema.config_schema())))
    return 0


def render_config_reference(rows: Sequence[tuple[str, str, Any, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, type_name, default, text in rows:
        shown = json.dumps(str(default) if isinstance(default, Path) else default)
        lines.append(f"| `{key}` | {type_name} | `{shown}` | {text} |")
    return "\n".join(lines)


def cmd_devices_add(args: argparse.Namespace) -> int:
    from edge.provision import provision

    bundle = provision(load_config_arg(args.config), args.kind, args.id, client_cert=args.client_cert)
    print(json.dumps(bundle, indent=2))
    print("This provisioning bundle holds the device's secrets: install it on the device now; it is not shown again.",
          file=sys.stderr)  # fmt: skip
    return 0


def cmd_devices_pair(args: argparse.Namespace) -> int:
    from edge.pairing import Pairing
    from edge.registry import DeviceRegistry

    config = load_config_arg(args.config)
    with schema.open_journal(config) as journal:  # the running gateway reads the same table
        done = Pairing(config, DeviceRegistry(journal), journal).approve(args.code, args.kind, args.id)
    print(f"approved {done['code']} as {done['kind']} {done['deviceId']!r}: the device's pairing page now fetches its "
          "own credentials (its provisioning bundle, handed over once)")  # fmt: skip
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    from edge.registry import DeviceRegistry

    config = load_config_arg(args.config)
    with schema.open_journal(config) as journal:
        devices = DeviceRegistry(journal).devices()
    for d in devices:
        print(f"{d.device_id}\t{d.kind}\t{'enabled' if d.enabled else 'disabled'}")
    return 0


def cmd_devices_remove(args: argparse.Namespace) -> int:
    from edge.provision import revoke

    done = revoke(load_config_arg(args.config), args.id)
    print(f"removed {args.id}: password and token revoked, {done['certificates_revoked']} certificate(s) on the CRL, "
          f"broker {'reloaded' if done['broker_reloaded'] else 'not running (applies at its start)'}, "
          f"live session {'ended' if done['session_ended'] else 'none reachable'}")  # fmt: skip
    return 0


def cmd_broker_conf(args: argparse.Namespace) -> int:
    import time

    from prometheus_client import CollectorRegistry

    from edge.broker import mosquitto_conf, sync_broker_files
    from edge.registry import DeviceRegistry
    from edge.store_network import StoreNetwork

    config = load_config_arg(args.config)
    with schema.open_journal(config) as journal:
        sync_broker_files(DeviceRegistry(journal), config.store.id, config.store.state_dir)
    network = StoreNetwork(config, CollectorRegistry(), time.time)
    listeners = network.prepare(args.port)
    network.record(config.http.port)
    print(mosquitto_conf(config.store.state_dir, "127.0.0.1", args.port, config.mqtt.max_queued_messages, args.user,
                         listeners=listeners, broker=config.broker, pki=network.pki), end="")  # fmt: skip
    return 0


def cmd_broker_prime(args: argparse.Namespace) -> int:
    import signal

    from edge.broker import broker_dir, gateway_password, signal_broker, wait_for_port
    from edge.sessions import prime_gateway_session

    config = load_config_arg(args.config)
    state_dir = config.store.state_dir
    if args.pid:
        (broker_dir(state_dir) / "mosquitto.pid").write_text(f"{args.pid}\n")
    wait_for_port("127.0.0.1", args.port, 30.0)
    created = prime_gateway_session("127.0.0.1", args.port, gateway_password(state_dir),
                                    config.mqtt.client_id or f"edge-gateway-{config.store.id}", config.store.id,
                                    config.mqtt.session_expiry_s)  # fmt: skip
    if created:
        signal_broker(state_dir, signal.SIGUSR1)
    print("created the gateway's persistent session" if created else "the gateway's persistent session exists")
    return 0


def cmd_journal_stats(args: argparse.Namespace) -> int:
    config = load_config_arg(args.config)
    with schema.open_journal(config) as journal:
        stats = journal.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"journal        {stats['path']} ({stats['bytes_on_disk'] / 1e6:.1f} MB on disk)")
    print(f"events         {stats['events']} (last seq {stats['max_seq']})")
    for name, count in stats["by_event"].items():
        print(f"  {name:<24} {count}")
    print(f"dead letters   {sum(stats['dead_letters'].values())}")
    for reason, count in stats["dead_letters"].items():
        print(f"  {reason:<24} {count}")
    for sink, seq in stats["sink_cursors"].items():
        print(f"cursor {sink:<16} {seq}")
    return 0


def cmd_journal_dead(args: argparse.Namespace) -> int:
    config = load_config_arg(args.config)
    with schema.open_journal(config) as journal:
        for row in journal.dead_letters(args.limit):
            print(json.dumps(row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="In-store personalization edge gateway.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the gateway")
    _config_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the gateway with a managed broker and a simulated store on 127.0.0.1")
    p.add_argument("--state-dir", type=Path, default=Path(".demo-state"), help="demo state directory")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP port (a free one if taken)")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    p.add_argument("--seed", type=int, default=1, help="simulation seed")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many real seconds (0: run until Ctrl-C)"
    )
    p.set_defaults(func=cmd_demo)

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    p = config.add_parser("check", help="validate a configuration file; prints every error with its key")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_config_check)
    p = config.add_parser("reference", help="print the configuration reference (markdown)")
    p.set_defaults(func=cmd_config_reference)

    devices = sub.add_parser("devices", help="the device registry").add_subparsers(
        dest="devices_command", required=True
    )
    p = devices.add_parser("add", help="register a device; prints its provisioning bundle (JSON: URLs, credentials, "
                           "CA certificate) once")  # fmt: skip
    p.add_argument("--kind", required=True, choices=sorted({"kiosk", "display", "tablet", "pos", "ops"}))
    p.add_argument("--id", required=True)
    p.add_argument("--client-cert", action="store_true",
                   help="also issue a client certificate for mutual TLS (CN = the device id)")  # fmt: skip
    _config_option(p)
    p.set_defaults(func=cmd_devices_add)
    p = devices.add_parser("pair", help="approve the pairing code a new device's page shows (/pages/pair); the "
                           "device then fetches its own credentials")  # fmt: skip
    p.add_argument("code", help="the code as the device shows it")
    p.add_argument("--kind", required=True, choices=sorted({"kiosk", "display", "tablet", "pos", "ops"}))
    p.add_argument("--id", help="device id (default: <kind>-<code>)")
    _config_option(p)
    p.set_defaults(func=cmd_devices_pair)
    p = devices.add_parser("list", help="list registered devices")
    _config_option(p)
    p.set_defaults(func=cmd_devices_list)
    p = devices.add_parser("remove", help="remove a device and revoke at once its password, token, certificates "
                           "(CRL) and live sessions")  # fmt: skip
    p.add_argument("--id", required=True)
    _config_option(p)
    p.set_defaults(func=cmd_devices_remove)

    broker = sub.add_parser("broker", help="broker files").add_subparsers(dest="broker_command", required=True)
    p = broker.add_parser("conf", help="write password/ACL files and the store PKI, print a mosquitto.conf: the "
                          "gateway's plain listener on 127.0.0.1, the device TLS listeners on broker.interfaces")  # fmt: skip
    p.add_argument("--port", type=int, default=1883, help="port of the gateway's own listener on 127.0.0.1")
    p.add_argument("--user", help="account the broker runs as (default: the current one)")
    _config_option(p)
    p.set_defaults(func=cmd_broker_conf)
    p = broker.add_parser("prime", help="create the gateway's persistent session before any device connects "
                          "(systemd ExecStartPost), so first-boot events are queued")  # fmt: skip
    p.add_argument("--port", type=int, default=1883, help="port of the gateway's own listener on 127.0.0.1")
    p.add_argument("--pid", type=int, help="the broker's PID, recorded for reloads (systemd: $MAINPID)")
    _config_option(p)
    p.set_defaults(func=cmd_broker_prime)

    journal = sub.add_parser("journal", help="journal tools").add_subparsers(dest="journal_command", required=True)
    p = journal.add_parser("stats", help="event counts, dead letters, sink cursors")
    p.add_argument("--json", action="store_true")
    _config_option(p)
    p.set_defaults(func=cmd_journal_stats)
    p = journal.add_parser("dead-letters", help="print the newest dead letters as JSON lines")
    p.add_argument("--limit", type=int, default=20)
    _config_option(p)
    p.set_defaults(func=cmd_journal_dead)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rpartition(".")[0]):
                raise
            continue
        module.add_commands(sub)
    return parser


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EdgeError as exc:
        if getattr(exc, "errors", None):
            for key, message in exc.errors:  # type: ignore[attr-defined]
                print(f"error: {key}: {message}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
