"""CLI commands: ``edge offers check``, ``edge forget``, ``edge export``, ``edge retention prune``,
``edge report uplift``.

Each handler is a few lines calling the library and returns the process exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge import control
from edge.config import Config, config_file
from edge.decisioning import retention
from edge.decisioning.erasure import Eraser
from edge.decisioning.export import export_person
from edge.decisioning.identity import IDENTIFIER_KINDS, Identity, load_key
from edge.decisioning.offers import OfferFileError, load_offers
from edge.decisioning.policy import key_file
from edge.decisioning.uplift import format_report, uplift_report
from edge.errors import EdgeError
from edge.events import TOKEN_PATTERN
from edge.journal import Journal

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    offers = subparsers.add_parser("offers", help="work with offer catalog files")
    offer_commands = offers.add_subparsers(dest="offers_command", required=True)
    check = offer_commands.add_parser("check", help="validate an offer file; every error with its path")
    check.add_argument("path", type=Path, help="the offer TOML file")
    check.add_argument("--catalog", type=Path, help="a catalog.csv whose SKUs/categories offers must use")
    check.set_defaults(func=offers_check)

    forget = subparsers.add_parser(
        "forget",
        help="erase a customer (token or raw identifier) and suppress them from now on;"
        " asks the running gateway over <state dir>/control.sock, else works on the journal file",
    )
    forget.add_argument(
        "identifier",
        metavar="IDENTIFIER_OR_TOKEN",
        help="a ct_… token, or a raw identifier with --kind (an e-mail needs none)",
    )
    forget.add_argument("--kind", choices=IDENTIFIER_KINDS, help="kind of a raw identifier")
    forget.add_argument("--request-id", help="the erasure request id to confirm to the CDP")
    forget.add_argument("--config", type=Path, help="gateway configuration file")
    forget.set_defaults(func=forget_customer)

    export = subparsers.add_parser(
        "export",
        help="everything the store holds about a customer, as one JSON document"
        " (asks the running gateway, else reads the journal file)",
    )
    export.add_argument(
        "identifier",
        metavar="IDENTIFIER_OR_TOKEN",
        help="a ct_… token, or a raw identifier with --kind (an e-mail needs none)",
    )
    export.add_argument("--kind", choices=IDENTIFIER_KINDS, help="kind of a raw identifier")
    export.add_argument("--config", type=Path, help="gateway configuration file")
    export.set_defaults(func=export_customer)

    keep = subparsers.add_parser("retention", help="retention of personal data (journal.retention_days)")
    keep_commands = keep.add_subparsers(dest="retention_command", required=True)
    prune = keep_commands.add_parser(
        "prune", help="delete personal data older than journal.retention_days from every table now"
    )
    prune.add_argument("--config", type=Path, help="gateway configuration file")
    prune.set_defaults(func=retention_prune)

    report = subparsers.add_parser("report", help="reports")
    reports = report.add_subparsers(dest="report_command", required=True)
    uplift = reports.add_parser("uplift", help="per campaign: treatment vs holdout, uplift, 95 %% CI")
    uplift.add_argument("--config", type=Path, help="gateway configuration file")
    uplift.add_argument("--json", action="store_true", help="print JSON instead of a table")
    uplift.set_defaults(func=report_uplift)


def offers_check(args: argparse.Namespace) -> int:
    skus = categories = None
    if args.catalog is not None:
        from models.catalog import load_catalog

        catalog = load_catalog(args.catalog)
        skus, categories = set(catalog.skus), {item.category for item in catalog.items}
    try:
        result = load_offers(args.path, skus=skus, categories=categories)
    except OfferFileError as exc:
        for path, message in exc.errors:
            print(f"{args.path}: {path}: {message}", file=sys.stderr)
        return 1
    print(f"{args.path}: {len(result.offers)} offers OK")
    return 0


def forget_customer(args: argparse.Namespace) -> int:
    """Ask the running gateway (its control socket) so the erasure is in force there when this
    returns; with no gateway running, erase in the journal file directly."""
    try:
        config = _config(args.config)
        identity = Identity(load_key(key_file(config)), config.identity.default_region)
        token = _token(identity, args.identifier, args.kind)
        try:
            answer = control.request(_socket(config), {"op": "forget", "userId": token, "requestId": args.request_id})
        except control.ControlUnavailable:
            with _journal(config) as journal:
                removed = Eraser(journal, identity, time.time).erase(token, args.request_id)
            where = "in the journal file (no gateway running); the gateway confirms it to the CDP at its next start"
        else:
            if "error" in answer:
                raise EdgeError(f"the gateway refused: {answer['error']}: {answer.get('detail', '')}")
            removed = int(answer["removed"])
            where = "by the running gateway, in force now; it confirms it to the CDP"
    except (EdgeError, ValueError) as exc:
        print(f"edge forget: {exc}", file=sys.stderr)
        return 2
    print(f"erased {token}: {removed} rows removed {where}; suppressed from now on")
    return 0


def export_customer(args: argparse.Namespace) -> int:
    """Ask the running gateway (one consistent snapshot of its state); else read the file."""
    try:
        config = _config(args.config)
        identity = Identity(load_key(key_file(config)), config.identity.default_region)
        token = _token(identity, args.identifier, args.kind)
        try:
            document = control.request(_socket(config), {"op": "export", "userId": token})
        except control.ControlUnavailable:
            with _journal(config) as journal:
                document = export_person(journal, Eraser(journal, identity, time.time), token)
        if "error" in document:
            raise EdgeError(f"the gateway refused: {document['error']}: {document.get('detail', '')}")
    except (EdgeError, ValueError) as exc:
        print(f"edge export: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=1, ensure_ascii=False))
    return 0


def retention_prune(args: argparse.Namespace) -> int:
    """Ask the running gateway to prune (so its caches follow); else prune the file."""
    try:
        config = _config(args.config)
        days = config.journal.retention_days
        try:
            answer = control.request(_socket(config), {"op": "prune"})
        except control.ControlUnavailable:
            with _journal(config) as journal:
                removed, _ = retention.prune(journal, retention.cutoff_ms(time.time(), days))
        else:
            if "error" in answer:
                raise EdgeError(f"the gateway refused: {answer['error']}: {answer.get('detail', '')}")
            removed = answer["removed"]
    except EdgeError as exc:
        print(f"edge retention prune: {exc}", file=sys.stderr)
        return 2
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days * 86_400))
    print(f"pruned personal data older than {days} days (before {cutoff}):")
    for table, count in sorted(removed.items()):
        print(f"  {table}: {count} rows")
    return 0


def report_uplift(args: argparse.Namespace) -> int:
    try:
        config = _config(args.config)
        with _journal(config) as journal:
            rows = uplift_report(journal)
    except EdgeError as exc:
        print(f"edge report uplift: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"campaigns": [r.as_json() for r in rows]}, indent=1))
    else:
        print(format_report(rows))
    return 0


def _token(identity: Identity, value: str, kind: str | None) -> str:
    if TOKEN_PATTERN.match(value):
        return value
    if kind is None and "@" in value:
        kind = "email"
    if kind is None:
        raise ValueError("not a ct_… token: say which identifier it is with --kind")
    return identity.token(kind, value)


def _config(path: Path | None) -> Config:
    from edge.schema import load

    return load(config_file(path))


def _journal(config: Config) -> Journal:
    from edge.schema import open_journal

    return open_journal(config)


def _socket(config: Config) -> Path:
    return control.socket_path(Path(config.store.state_dir))  # where the running gateway listens
