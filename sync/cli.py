"""``edge sync status|drain`` and ``edge central …``: thin handlers over the library.

Each handler is set as ``func`` on its sub-parser (``args.func(args)`` returns the exit code).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.config import CentralConfig

if TYPE_CHECKING:
    from edge.config import Config
    from edge.journal import Journal
    from edge.types import ConsentPolicy

__all__ = ["PolicyFactory", "add_commands"]

#: Builds the consent-and-erasure check for ``sync drain`` from the open journal and the
#: configuration (default: :func:`edge.decisioning.policy.offline_policy`, the running
#: gateway's ledger and suppression list read from the journal).
PolicyFactory = Callable[["Journal", "Config"], "ConsentPolicy"]


def add_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    *,
    policy_factory: PolicyFactory | None = None,
) -> None:
    sync = subparsers.add_parser("sync", help="store-and-forward sync to the CDP")
    sync_cmds = sync.add_subparsers(dest="sync_command", required=True)
    status = sync_cmds.add_parser("status", help="backlog, oldest unsent event, last success per sink, drops")
    status.add_argument("--config", type=Path, help="gateway TOML configuration")
    status.set_defaults(func=_status)
    drain = sync_cmds.add_parser("drain", help="send everything queued to the configured sinks, then exit")
    drain.add_argument("--config", type=Path, help="gateway TOML configuration")
    drain.set_defaults(func=lambda args: _drain(args, policy_factory))

    central = subparsers.add_parser("central", help="the centre: backbone, fleet identities, central job")
    central_cmds = central.add_subparsers(dest="central_command", required=True)
    identities = central_cmds.add_parser(
        "identities", help="create the centre's and each store's NATS nkey, write the hub's auth.conf"
    )
    identities.add_argument("--fleet", type=Path, required=True, help="the fleet directory")
    identities.add_argument("--store", action="append", default=[], help="store id (repeat)")
    identities.set_defaults(func=_central_identities)
    streams = central_cmds.add_parser(
        "streams", help="create or update the JetStream streams and consumers (or --check them)"
    )
    streams.add_argument("--fleet", type=Path, required=True, help="the fleet directory")
    streams.add_argument("--check", action="store_true", help="only verify; exit 1 on a difference")
    run = central_cmds.add_parser("run", help="one worker loading every store's events into PostgreSQL")
    erase = central_cmds.add_parser("erase", help="erase a person centrally and at every store")
    erasures = central_cmds.add_parser(
        "erasures", help="erasure requests some store has not confirmed yet, and for how long"
    )
    publish_model = central_cmds.add_parser(
        "publish-model", help="sign a model directory and roll it out to the fleet in waves"
    )
    publish_model.add_argument("model_dir", type=Path, help="model directory (model.onnx, manifest.json, …)")
    publish_model.add_argument(
        "--catalog",
        help="product catalog the stores' model must have been built for (default: sha256 of MODEL_DIR/catalog.csv)",
    )
    publish_model.add_argument("--version", help="release version (default: the model manifest's)")
    publish_offers = central_cmds.add_parser("publish-offers", help="roll an offers file out to the fleet in waves")
    publish_offers.add_argument("file", type=Path, help="offers TOML file")
    train = central_cmds.add_parser(
        "train", help="train the recommender on every store's consented purchases in PostgreSQL"
    )
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--catalog", type=Path, required=True, help="the product catalog (catalog.csv)")
    train.set_defaults(func=_central_train)
    status = central_cmds.add_parser("status", help="stores, last seen, versions, backlog, lag")
    status.add_argument("--fleet", type=Path, required=True, help="the fleet directory")
    for p in (publish_model, publish_offers):
        p.add_argument("--fleet", type=Path, required=True, help="the fleet directory")
        p.add_argument("--signing-key", type=Path, required=True,
                       help="the centre's Ed25519 private key (PEM, PKCS#8)")  # fmt: skip
        p.add_argument("--canaries", type=int, default=2, help="stores in the first wave (2)")
        p.add_argument("--fraction", type=float, default=0.10, help="share of the fleet in the second wave (0.10)")
        p.add_argument("--wave-timeout", type=float, default=600.0, help="seconds a wave may take to report healthy")
        p.add_argument("--max-error-rate", type=float, default=0.01, help="highest error share of decisions (0.01)")
        p.add_argument("--latency-factor", type=float, default=1.5,
                       help="highest p99 as a multiple of the store's p99 before the rollout (1.5, + 5 ms)")  # fmt: skip
        p.set_defaults(func=_central_publish)
    for p in (streams, run, erase, erasures, publish_model, publish_offers, status, train):
        p.add_argument("--nats", action="append", help="NATS URL (repeat for a cluster)")
        p.add_argument("--credentials", help="the centre's nkey seed or .creds file")
        p.add_argument("--postgres", help="PostgreSQL DSN")
        p.add_argument("--config", type=Path, help="TOML configuration with a [central] section")
    streams.set_defaults(func=_central_streams)
    run.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT (per worker)")
    run.set_defaults(func=_central_run)
    erase.add_argument("--user", required=True, help="customer token (ct_…)")
    erase.add_argument("--request-id", required=True, help="the CDP's erasure request id")
    erase.set_defaults(func=_central_erase)
    erasures.set_defaults(func=_central_erasures)
    status.set_defaults(func=_central_status)


def _load(path: Path | None) -> Config:
    from edge.config import config_file
    from edge.schema import load

    return load(config_file(path))


def _open_journal(config: Any) -> Any:
    from edge.schema import open_journal

    return open_journal(config)


def _status(args: argparse.Namespace) -> int:
    from sync.status import sync_status

    config = _load(args.config)
    sinks = [n for n, s in (("http", config.sync_http), ("nats", config.sync_nats)) if s.enabled]
    with _open_journal(config) as journal:
        print(json.dumps(sync_status(journal, sinks, config.sync.quota_bytes), indent=2))
    return 0


def _drain(args: argparse.Namespace, factory: PolicyFactory | None) -> int:
    from tqdm import tqdm

    from sync.drain import drain_all

    if factory is None:
        from edge.decisioning.policy import offline_policy

        factory = offline_policy
    config = _load(args.config)
    with _open_journal(config) as journal:
        policy = factory(journal, config)
        with tqdm(unit="ev", desc="drain") as bar:
            sent = asyncio.run(drain_all(journal, config, lambda u: policy.allows(u, "cdp_sync"),
                                         progress=bar.update, is_erased=policy.is_suppressed))  # fmt: skip
    print(json.dumps(sent))
    return 0


def _central_config(args: argparse.Namespace, *, postgres: bool = True) -> CentralConfig:
    base = _load(args.config).central if args.config else CentralConfig()
    changes: dict[str, Any] = {}
    if args.nats:
        changes["servers"] = args.nats
    if args.postgres:
        changes["postgres"] = args.postgres
    if args.credentials:
        changes["credentials"] = args.credentials
    config = dataclasses.replace(base, **changes)
    if postgres and not config.postgres:
        raise SystemExit("central: give --postgres DSN or central.postgres in --config")
    return config


def _central_identities(args: argparse.Namespace) -> int:
    from sync.identities import FleetIdentities

    fleet = FleetIdentities(args.fleet)
    try:
        created = fleet.add(args.store)
    except ValueError as exc:
        print(f"central identities: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"created": created, "stores": fleet.stores(), "auth_conf": str(fleet.auth_conf)}))
    return 0


def _central_streams(args: argparse.Namespace) -> int:
    from sync.backbone import ensure_backbone, verify_backbone
    from sync.identities import FleetIdentities
    from sync.nats_sink import connect

    config = _central_config(args, postgres=False)
    stores = FleetIdentities(args.fleet).stores()

    async def go() -> list[str]:
        nc = await connect(config.servers, config.credentials, name="edge-central-streams")
        try:
            js = nc.jetstream(timeout=30)
            if args.check:
                return await verify_backbone(js, config, stores)
            return await ensure_backbone(js, config, stores)
        finally:
            await nc.close()

    lines = asyncio.run(go())
    print(json.dumps({"check" if args.check else "done": lines, "stores": len(stores)}))
    return 1 if args.check and lines else 0


def _central_erasures(args: argparse.Namespace) -> int:
    from sync.central import CentralJob

    pending = asyncio.run(CentralJob(_central_config(args)).pending_erasures())
    print(json.dumps({"unconfirmed": pending}, indent=2))
    return 0


def _central_run(args: argparse.Namespace) -> int:
    import logging

    from sync.central import CentralJob

    if not logging.getLogger().handlers:  # lag reports are INFO lines
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = _central_config(args)
    if args.metrics_port is not None:
        config = dataclasses.replace(config, metrics_port=args.metrics_port)
    asyncio.run(_create_and_run(CentralJob(config)))
    return 0


async def _create_and_run(job: Any) -> None:
    await job.create_schema()
    await job.run()


def _central_erase(args: argparse.Namespace) -> int:
    from sync.central import CentralJob

    job = CentralJob(_central_config(args))
    stores = asyncio.run(job.request_erasure(args.user, args.request_id))
    print(json.dumps({"request_id": args.request_id, "stores": stores}))
    return 0


def _central_publish(args: argparse.Namespace) -> int:
    from sync.identities import FleetIdentities
    from sync.nats_sink import connect
    from sync.rollout import HealthRule, ReleaseStore, model_release, offers_release, roll_out

    config = _central_config(args, postgres=False)
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(args.signing_key.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{args.signing_key} is not an Ed25519 private key")
        if args.central_command == "publish-model":
            release = model_release(args.model_dir, key, args.catalog, args.version)
        else:
            release = offers_release(args.file, key)
    except (OSError, ValueError) as exc:
        print(f"central {args.central_command}: {exc}", file=sys.stderr)
        return 2
    stores = FleetIdentities(args.fleet).stores()

    async def go() -> Any:
        nc = await connect(config.servers, config.credentials, name="edge-central-rollout")
        try:
            return await roll_out(
                nc.jetstream(timeout=30), release, stores, ReleaseStore(args.fleet),
                canaries=args.canaries, fraction=args.fraction, wave_timeout_s=args.wave_timeout,
                rule=HealthRule(max_error_rate=args.max_error_rate, latency_factor=args.latency_factor),
                on_progress=lambda line: print(line, file=sys.stderr),
            )  # fmt: skip
        finally:
            await nc.close()

    result = asyncio.run(go())
    print(json.dumps(dataclasses.asdict(result)))
    return 0 if result.status == "complete" else 1


def _central_status(args: argparse.Namespace) -> int:
    from sync.fleet_status import fleet_status
    from sync.identities import FleetIdentities

    config = _central_config(args, postgres=False)
    report = asyncio.run(fleet_status(config, FleetIdentities(args.fleet).stores()))
    print(json.dumps(report, indent=2))
    return 0


def _central_train(args: argparse.Namespace) -> int:
    from models.errors import ModelsError
    from sync.central_train import train_from_postgres

    config = _central_config(args)
    try:
        manifest = train_from_postgres(config.postgres, args.catalog, args.out)
    except (ModelsError, OSError) as exc:
        print(f"central train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"version": manifest["version"], "out": str(args.out),
                      "metrics": manifest.get("metrics")}))  # fmt: skip
    return 0
