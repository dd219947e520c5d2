from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.decisioning.component import DEMO_OFFERS
from edge.decisioning.offers import OfferFileError, load_offers

from .conftest import Gateway, running, settle
from .test_erasure import _parser

BAD = """
version = 1
colour = "red"
[levers]
margin = -1

[[offers]]
id = "a"
title = ""
type = "free_lunch"
sku = "SKU1"
category = "dairy"
hours = [20, 8]
days = ["mon", "caturday"]
channels = ["kiosk", "radio"]
valid_from = 2026-05-01
valid_until = 2026-04-01
caps = { per_person_day = 0, per_year = 3 }
experiment = { holdout = 0.9, unit = "store" }

[[offers]]
id = "a"
title = "dup"
type = "content"
sku = "SKU2"
value = 1
lever = "vibes"
"""


def test_every_error_has_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(OfferFileError) as info:
        load_offers(path)
    paths = {p for p, _ in info.value.errors}
    assert {
        "colour",
        "levers.margin",
        "offers[0].title",
        "offers[0].type",
        "offers[0].sku",
        "offers[0].value",
        "offers[0].hours",
        "offers[0].days",
        "offers[0].channels",
        "offers[0].valid_until",
        "offers[0].caps.per_person_day",
        "offers[0].caps.per_year",
        "offers[0].experiment.holdout",
        "offers[0].experiment.unit",
        "offers[1].lever",
    } <= paths


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    args = parser.parse_args(["offers", "check", str(bad)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "offers[0].hours:" in err and "offers[1].lever:" in err
    args = parser.parse_args(["offers", "check", str(DEMO_OFFERS)])
    assert args.func(args) == 0
    assert "9 offers OK" in capsys.readouterr().out
    missing = tmp_path / "nope.toml"
    args = parser.parse_args(["offers", "check", str(missing)])
    assert args.func(args) == 1


def test_demo_offers_use_the_default_catalog() -> None:
    catalog_csv = Path(__file__).resolve().parents[3] / "models" / "default" / "catalog.csv"
    if not catalog_csv.exists():
        pytest.skip("models/default is not built yet")
    from models.catalog import load_catalog

    catalog = load_catalog(catalog_csv)
    load_offers(DEMO_OFFERS, skus=set(catalog.skus), categories={i.category for i in catalog.items})


@pytest.mark.anyio
async def test_reload_on_change_and_refusal_keeps_the_old(gateway: Gateway) -> None:
    gw = gateway
    assert {o.id for o in gw.component.offers.offers} == {"milk-10", "bread-2for1", "snacks-cat"}
    async with running(gw):
        gw.offers_path.write_text(BAD)
        _touch(gw.offers_path)
        await _wait(lambda: _refused(gw) == 1)
        assert {o.id for o in gw.component.offers.offers} == {"milk-10", "bread-2for1", "snacks-cat"}
        gw.offers_path.write_text(DEMO_OFFERS.read_text())
        _touch(gw.offers_path)
        await _wait(lambda: len(gw.component.offers.offers) == 9)
        await settle(gw)
    assert _refused(gw) == 1


def _touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def _wait(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def _refused(gw: Gateway) -> float:
    return gw.component.ctx.metrics.get_sample_value("edge_offer_files_refused_total") or 0.0


def test_a_bad_file_at_start_serves_no_offers(tmp_path: Path) -> None:
    from .conftest import make_gateway

    gw = make_gateway(tmp_path, BAD)
    try:
        assert gw.component.offers.offers == ()
        assert gw.component.readiness()["offers"]() is False
        assert _refused(gw) == 1
    finally:
        gw.ingestor.stop()
        gw.journal.close()
