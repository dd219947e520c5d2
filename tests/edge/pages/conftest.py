from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pagekit import FEATURES, Browser, chromium, pages_config
from support.gateway import GatewayHandle, register, running_gateway

DEVICES = [("kiosk", "kiosk-1"), ("display", "display-1"), ("tablet", "tablet-1"), ("pos", "pos-1"),
           ("ops", "ops-1")]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, dict[str, Any]]]:
    """A running gateway (managed Mosquitto, HTTPS + MQTT/TLS on the 'LAN') with one device per role."""
    config = pages_config(tmp_path_factory.mktemp("pages") / "state")
    creds = register(config, DEVICES)
    with running_gateway(config, features=FEATURES) as handle:
        yield handle, creds


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b
