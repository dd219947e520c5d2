"""``edge simulate``: a thin command over :mod:`devices.sim`.

An entry point beside ``edge demo``: without ``--fleet`` it starts a whole gateway in this
process, so it lives with the entry points, not inside the devices feature."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

__all__ = ["add_commands"]


def cmd_simulate(args: argparse.Namespace) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.fleet is not None:
        from devices.sim import load_fleet, run_simulation

        report = asyncio.run(run_simulation(load_fleet(args.fleet), hours=args.hours, speed=args.speed, seed=args.seed))
        print(report.summary())
        return 0
    from edge.demo import run_demo  # the gateway in this process, with simulated hardware

    demo_args = argparse.Namespace(
        state_dir=args.state_dir, http_port=args.http_port, speed=args.speed, seed=args.seed,
        duration=args.hours * 3600 / args.speed,
    )  # fmt: skip
    return int(asyncio.run(run_demo(demo_args)))


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "simulate",
        help="run a simulated store (customers, BLE, POS, camera, kiosks) for a number of hours",
        description="Without --fleet: start a gateway in this process with simulated hardware and drive it."
        " With --fleet: drive an already running gateway's network devices (kiosks, display, POS) only.",
    )
    p.add_argument("--hours", type=float, default=1.0, help="simulated opening hours to run (default 1)")
    p.add_argument("--speed", type=float, default=120.0, help="simulated seconds per real second (default 120)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--fleet", type=Path, help="fleet file of a running gateway (as `edge demo` writes it)")
    p.add_argument("--state-dir", type=Path, default=Path(".simulate-state"), help="state directory (in-process mode)")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP port in in-process mode (a free one if taken)")
    p.set_defaults(func=cmd_simulate)
