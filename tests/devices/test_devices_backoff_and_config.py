from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import pytest

from devices.ble.scanner import run_scanner
from devices.config import CONFIG_SECTIONS
from devices.errors import DeviceUnavailable
from edge.backoff import backoff_delay
from edge.config import parse_config, section_keys
from edge.errors import ConfigError


def test_backoff_grows_exponentially_and_caps() -> None:
    delays = [backoff_delay(n, base_s=0.5, cap_s=8, jitter=0, rng=lambda: 0.0) for n in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff_delay(10_000, cap_s=30, jitter=0) == 30


def test_backoff_jitter_stays_within_the_band() -> None:
    assert backoff_delay(3, base_s=1, cap_s=100, jitter=0.5, rng=lambda: 0.999999) == pytest.approx(4.000004, rel=1e-5)
    assert backoff_delay(3, base_s=1, cap_s=100, jitter=0.5, rng=lambda: 0.0) == 8.0


def test_backoff_honours_retry_after_even_above_the_cap() -> None:
    assert backoff_delay(0, base_s=0.5, retry_after_s=12.0, cap_s=5) == 12.0
    assert backoff_delay(6, base_s=1, cap_s=30, jitter=0, retry_after_s=2.0) == 30.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1)
    with pytest.raises(ValueError):
        backoff_delay(1, jitter=2)


def test_every_config_key_is_documented_and_hardware_defaults_off() -> None:
    for key, _type, _default, text in section_keys(CONFIG_SECTIONS):
        assert len(text) > 15, key
    config = parse_config({}, CONFIG_SECTIONS, {})
    assert (config.ble.source, config.pos.source, config.camera.source) == ("off", "off", "off")
    for name in ("ble", "pos", "camera"):
        hints = {f.name: f for f in dataclasses.fields(CONFIG_SECTIONS[name])}
        assert "simulated" in str(hints["source"].type)


def test_config_checks_name_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"ble": {"app_uuid": "nope", "zone_id": "a/b"}, "presence": {"enter_dbm": -90.0}},
                     CONFIG_SECTIONS, {})  # fmt: skip
    keys = {key for key, _ in caught.value.errors}
    assert {"ble.app_uuid", "ble.zone_id", "presence"} <= keys


def test_receipt_grammar_and_display_come_from_config() -> None:
    layout = {
        "decimal_separator": ",",
        "currency_symbols": ["EUR", "€"],
        "receipt_item_pattern": r"^(?P<qty>\d+)\s+(?P<sku>[A-Z0-9-]+)\s+(?P<name>.+?)\s+{amount}$",
        "receipt_total_pattern": r"^SUMME\s+{amount}$",
        "receipt_loyalty_pattern": r"^KUNDENKARTE\s+(?P<number>\d{6,20})$",
        "display_command_set": "cd5220",
        "display_country": "germany",
    }
    pos = parse_config({"pos": layout}, CONFIG_SECTIONS, {}).pos
    lines = ["2 OAT-1L Hafermilch 1L EUR 3,98", "1 BAN-6 Bananen 1,49 €", "SUMME 5,47", "KUNDENKARTE 6012345678901234"]
    receipt = pos.receipt_grammar().interpret(lines)
    assert [(i.sku, i.name, i.quantity, i.amount_cents) for i in receipt.items] == [
        ("OAT-1L", "Hafermilch 1L", 2, 398), ("BAN-6", "Bananen", 1, 149)]  # fmt: skip
    assert (receipt.total_cents, receipt.loyalty_number, receipt.check) == (547, "6012345678901234", "ok")
    with pytest.raises(ConfigError) as caught:
        parse_config({"pos": {"receipt_total_pattern": "^TOTAL (", "receipt_item_pattern": "^(?P<name>.+)$",
                              "display_code_page": "utf-8", "display_country": "mars"}},
                     CONFIG_SECTIONS, {})  # fmt: skip
    keys = {key for key, _ in caught.value.errors}
    assert {"pos.receipt_total_pattern", "pos.receipt_item_pattern", "pos.display_code_page",
            "pos.display_country"} <= keys  # fmt: skip


def test_public_api_matches_all() -> None:
    import devices.ble
    import devices.sim

    for module in (devices, devices.ble, devices.sim):
        assert sorted(module.__all__) == sorted(
            n for n in vars(module) if not n.startswith("_") and n in module.__all__
        )
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


class QuietScanner:
    """A scanner that hears once at start and then goes quiet; counts restarts."""

    starts = 0

    def __init__(self, callback: Any, *, adapter: str, mode: str) -> None:
        self.last_heard = time.monotonic()

    async def __aenter__(self) -> QuietScanner:
        QuietScanner.starts += 1
        if QuietScanner.starts == 2:
            raise DeviceUnavailable("adapter busy")
        self.last_heard = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_watchdog_restarts_a_quiet_scanner_and_logs_the_failure_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        task = asyncio.create_task(
            run_scanner(lambda adv: None, adapter="hci9", mode="passive", watchdog_s=0.08,
                        scanner_factory=QuietScanner, retry_base_s=0.01)  # type: ignore[arg-type]
        )  # fmt: skip
        await asyncio.sleep(1.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="devices.ble.scanner"):
        asyncio.run(main())
    assert QuietScanner.starts >= 3
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "hci9" in failures[0].getMessage()
