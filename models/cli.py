"""``edge model …``: a thin argparse layer over the library (each handler a few lines).

The gateway's CLI calls :func:`add_commands` on its subparsers; ``python -m models`` does the
same for standalone use. Handlers return a process exit code: 0 ok, 2 bad data or model.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

__all__ = ["add_commands", "build_parser", "main"]


def _cutoff(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cutoff {text!r} is not an ISO date or time (e.g. 2026-03-01)") from None


def _split(args: argparse.Namespace) -> tuple[str, datetime | None] | None:
    """(split, cutoff), or None after printing why the pair is unusable."""
    if args.split == "time" and args.cutoff is None:
        print("error: --split time needs --cutoff DATE", file=sys.stderr)
        return None
    if args.split == "last" and args.cutoff is not None:
        print("error: --cutoff applies only with --split time", file=sys.stderr)
        return None
    return args.split, args.cutoff


def _add_split(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split",
        choices=("last", "time"),
        default="last",
        help="held-out baskets: each customer's last (default), or with "
        "'time' each customer's first on or after --cutoff",
    )
    parser.add_argument(
        "--cutoff", type=_cutoff, default=None, help="with --split time: ISO date; earlier baskets train"
    )


def _simulate(args: argparse.Namespace) -> int:
    from .simulate import simulate_store

    summary = simulate_store(
        Path(args.out), seed=args.seed, customers=args.customers, days=args.days, skus=args.skus, quiet=args.quiet
    )
    if not args.quiet:
        print(f"wrote {summary['orders']} orders ({summary['lines']} lines) to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .build import train_model
    from .errors import ModelsError
    from .train import TrainConfig

    split = _split(args)
    if split is None:
        return 2
    try:
        manifest = train_model(
            Path(args.data),
            Path(args.out),
            quiet=args.quiet,
            config=TrainConfig(dim=args.dim),
            top_k=args.top_k,
            split=split[0],
            cutoff=split[1],
        )
    except ModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"model {manifest['version']} written to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .errors import ModelsError
    from .evaluate import evaluate_model, format_table, to_json

    split = _split(args)
    if split is None:
        return 2
    try:
        report = evaluate_model(
            Path(args.model), Path(args.data), quiet=args.quiet or args.json, split=split[0], cutoff=split[1]
        )
    except ModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_json(report) if args.json else format_table(report))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``model`` with subcommands ``simulate``, ``train`` and ``evaluate``."""
    model = subparsers.add_parser("model", help="simulate data, train and evaluate the recommender")
    commands = model.add_subparsers(dest="model_command", required=True)

    sim = commands.add_parser("simulate", help="write a simulated store with a known truth")
    sim.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    sim.add_argument("--customers", type=int, default=3000, help="number of customers")
    sim.add_argument("--days", type=int, default=90, help="number of simulated days")
    sim.add_argument("--skus", type=int, default=3000, help="catalog size")
    sim.add_argument("--out", required=True, help="data directory to write")
    sim.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    sim.set_defaults(func=_simulate)

    train = commands.add_parser("train", help="train a model directory from a data directory")
    train.add_argument("--data", required=True, help="data directory (catalog.csv, transactions.csv)")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--dim", type=int, default=64, help="embedding dimension (default 64)")
    train.add_argument("--top-k", type=int, default=50, help="K of the exported TopK (default 50)")
    _add_split(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    train.set_defaults(func=_train)

    ev = commands.add_parser("evaluate", help="held-out metrics of a model and the baselines")
    ev.add_argument("--model", required=True, help="model directory")
    ev.add_argument("--data", required=True, help="data directory the model was trained on")
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object")
    _add_split(ev)
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
