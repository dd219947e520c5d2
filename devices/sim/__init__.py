"""The store simulator (``edge simulate``, and the store behind ``edge demo``).

Library entry points:

* :data:`DEMO_CONFIG` — config overrides that switch the adapters to their simulated sources.
* :func:`run_demo_store` — drive a running in-process gateway's devices and its broker.
* :func:`run_simulation` — the same from parts (fleet, devices component or None, clock).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices.sim.catalog import Product, load_products
from devices.sim.clock import SimClock
from devices.sim.fleet import Fleet, FleetDevice, load_fleet
from devices.sim.store import SimulationReport, StoreSimulation

if TYPE_CHECKING:
    from devices.component import DevicesComponent

__all__ = [
    "DEMO_CONFIG",
    "Fleet",
    "FleetDevice",
    "Product",
    "SimClock",
    "SimulationReport",
    "StoreSimulation",
    "load_fleet",
    "load_products",
    "run_demo_store",
    "run_simulation",
]

log = logging.getLogger(__name__)

#: Simulated hardware, with presence windows sized for compressed time (seconds are simulated).
DEMO_CONFIG: dict[str, dict[str, Any]] = {
    "ble": {"source": "simulated", "zone_id": "store"},
    "presence": {"window_s": 120.0, "exit_timeout_s": 300.0, "min_samples": 3},
    "pos": {"source": "simulated"},
    "camera": {"source": "simulated", "audience_interval_s": 10.0},
}


async def run_simulation(
    fleet: Fleet,
    *,
    devices: DevicesComponent | None = None,
    hours: float | None = 1.0,
    speed: float = 120.0,
    seed: int = 1,
    clock: SimClock | None = None,
    products: list[Product] | None = None,
) -> SimulationReport:
    """Run the store for ``hours`` simulated hours (forever if None) at ``speed``×.

    ``devices`` is the gateway's :class:`~devices.component.DevicesComponent` when the simulator
    runs in the gateway process (local BLE, POS and camera inputs); without it only the network
    devices of the fleet act.
    """
    clock = clock or SimClock(speed)
    if devices is not None:
        devices.use_clock(clock.now)
    simulation = StoreSimulation(fleet, products or load_products(seed=seed), clock, devices=devices, seed=seed)
    report = await simulation.run(hours)
    log.info("simulation finished: %s", report.summary())
    return report


async def run_demo_store(
    devices: DevicesComponent | None,
    fleet_file: Path,
    *,
    speed: float = 60.0,
    seed: int = 1,
    hours: float | None = None,
) -> SimulationReport:
    """What ``edge demo`` runs next to its gateway (given its devices feature, if enabled): the
    whole store, until cancelled."""
    return await run_simulation(load_fleet(fleet_file), devices=devices, hours=hours, speed=speed, seed=seed)
