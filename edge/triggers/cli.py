"""``edge triggers check PATH``, ``edge triggers report [--json]``, ``edge triggers promote TRIGGER VARIANT``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge.triggers.library import LibraryError, load_library

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    triggers = subparsers.add_parser("triggers", help="the trigger library: check, report, promote")
    sub = triggers.add_subparsers(dest="triggers_command", required=True)
    p = sub.add_parser("check", help="validate a trigger library file; every error with its key")
    p.add_argument("path", type=Path, help="the trigger library TOML file")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser(
        "report",
        help="per trigger, version and variant: fired, delivered, held out, conversions,"
        " uplift over the holdout (always-valid interval), P(best), verdict",
    )
    p.add_argument("--json", action="store_true", help="the same document as GET /v1/reports/triggers")
    p.add_argument("--config", type=Path, help="gateway configuration file")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser(
        "promote",
        help="make VARIANT the business rule of TRIGGER: all non-holdout traffic goes"
        " to it, the holdout shrinks to the trigger's min_holdout (the running gateway picks it"
        " up within triggers.reload_seconds)",
    )
    p.add_argument("trigger", help="trigger id")
    p.add_argument("variant", help="variant id")
    p.add_argument("--version", type=int, help="trigger version (default: the one in the library)")
    p.add_argument("--config", type=Path, help="gateway configuration file")
    p.set_defaults(func=cmd_promote)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        library = load_library(args.path)
    except LibraryError as exc:
        for key, message in exc.errors:
            print(f"error: {key}: {message}", file=sys.stderr)
        return 2
    kinds: dict[str, int] = {}
    for t in library.triggers:
        kinds[t.signal.kind] = kinds.get(t.signal.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    print(f"ok: {len(library.triggers)} triggers ({summary})")
    return 0


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from edge import schema
    from edge.config import config_file

    config = schema.load(config_file(args.config))
    return config, schema.open_journal(config)


def cmd_report(args: argparse.Namespace) -> int:
    from edge.triggers.report import format_report, report
    from edge.triggers.tables import FiringStore

    config, journal = _open(args)
    with journal:
        doc = report(
            FiringStore(journal), int(time.time() * 1000), alpha=config.triggers.alpha, tau=config.triggers.tau
        )
    print(json.dumps(doc, indent=2) if args.json else format_report(doc))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from edge.triggers.tables import FiringStore

    config, journal = _open(args)
    if not config.triggers.path:
        print("error: triggers.path: no trigger library configured", file=sys.stderr)
        return 2
    library = load_library(Path(config.triggers.path))
    found = [t for t in library.triggers if t.id == args.trigger]
    if not found:
        print(f"error: no trigger {args.trigger!r} in {config.triggers.path}", file=sys.stderr)
        return 2
    trigger = found[0]
    if args.variant not in {v.id for v in trigger.variants}:
        print(
            f"error: trigger {trigger.id} has no variant {args.variant!r} "
            f"(variants: {', '.join(v.id for v in trigger.variants)})",
            file=sys.stderr,
        )
        return 2
    version = args.version or trigger.version
    with journal:
        FiringStore(journal).promote(trigger.id, version, args.variant, trigger.min_holdout, int(time.time() * 1000))
    print(
        f"promoted {trigger.id}@{version} → {args.variant}; other variants retired, holdout {trigger.min_holdout:.0%}"
    )
    return 0
