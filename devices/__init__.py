"""Store devices: BLE beacons and app presence, serial POS, cameras, MQTT device clients.

The gateway wires this package through :data:`CONFIG_SECTIONS`, :data:`MIGRATIONS` and
:func:`build`; ``edge simulate`` comes from :mod:`edge.simulate` (an entry point: it may start a whole gateway). Importing the package is cheap:
the vendor libraries (bleak, pyserial, OpenCV) load only when :func:`build` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.ble.rotating import MIGRATIONS
from devices.config import CONFIG_SECTIONS
from devices.errors import DeviceError, DeviceUnavailable, ParseError, TokenRejected

if TYPE_CHECKING:
    from devices.component import DevicesComponent
    from edge.component import GatewayContext
    from edge.types import DecideHandler, ErasureHooks

__all__ = [
    "CONFIG_SECTIONS",
    "MIGRATIONS",
    "DeviceError",
    "DeviceUnavailable",
    "ParseError",
    "TokenRejected",
    "build",
]


def build(
    ctx: GatewayContext, *, decide: DecideHandler | None = None, erasure: ErasureHooks | None = None
) -> DevicesComponent:
    """The devices component for the gateway (see :mod:`devices.component`)."""
    from devices.component import build as build_component

    return build_component(ctx, decide=decide, erasure=erasure)
