"""The POS adapter over real pseudo-terminals opened with pyserial (no hardware)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from devices_helpers import FIXTURES, Pty, RecordingBus, load_hex, pos_terminal, until

from devices.pos.adapter import PosTerminal
from devices.pos.link import reconnecting
from devices.pos.protocol import ItemAdded, encode_frame
from edge.bus import Source


def test_basket_session_over_a_pty_becomes_events(tmp_path: Path, bus: RecordingBus) -> None:
    async def main() -> None:
        pty = Pty(tmp_path / "edge-pos0")
        terminal, outlet = pos_terminal(bus)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outlet.run()),
                tg.create_task(reconnecting(str(pty.link), terminal.read_basket, baudrate=9600, what="basket")),
            ]
            pty.write(load_hex(FIXTURES / "pos" / "basket_session.hex"))
            await until(lambda: len(bus.events) == 6)
            for task in tasks:
                task.cancel()
        pty.unplug()

    asyncio.run(main())
    names = [e["event"] for e in bus.events]
    assert names == ["Product Added", "Product Added", "Customer Identified", "Product Removed",
                     "Product Added", "Order Completed"]  # fmt: skip
    source = bus.batches[0][0]
    assert source == Source("s1", "pos-1", "pos", "serial")
    identified, order = bus.events[2], bus.events[5]
    assert identified["properties"]["identifiers"] == {"loyaltyId": "6012345678901234"}
    assert "userId" not in identified
    assert order["properties"]["orderId"] == "T1-000123" and order["properties"]["total"] == 7.47
    assert order["properties"]["products"] == [
        {"sku": "OAT-1L", "quantity": 2, "price": 1.99},
        {"sku": "CHOC-70", "quantity": 1, "price": 3.49},
    ]
    assert order["properties"]["identifiers"] == {"loyaltyId": "6012345678901234"}
    assert len({e["anonymousId"] for e in bus.events}) == 1  # one visit id for the basket


def test_unplug_and_replug_loses_no_frame(tmp_path: Path, bus: RecordingBus, caplog: Any) -> None:
    frames = [encode_frame(ItemAdded(f"SKU-{i}", 1, 100 + i)) for i in range(8)]

    async def main() -> PosTerminal:
        pty = Pty(tmp_path / "edge-pos0")
        terminal, outlet = pos_terminal(bus)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outlet.run()),
                tg.create_task(reconnecting(str(pty.link), terminal.read_basket, baudrate=9600, what="basket")),
            ]
            for frame in frames[:3]:
                pty.write(frame + b"\xff\x00junk")
            await until(lambda: len(bus.events) == 3)
            pty.unplug()  # the USB adapter is pulled
            await asyncio.sleep(0.3)
            pty.plug()  # ... and plugged back in (new tty, same stable name)
            for frame in frames[3:]:  # the till sends while the gateway is still reconnecting
                pty.write(frame)
            await until(lambda: len(bus.events) == 8)
            for task in tasks:
                task.cancel()
        pty.unplug()
        return terminal

    with caplog.at_level("INFO", logger="devices.pos.link"):
        terminal = asyncio.run(main())
    assert [e["properties"]["sku"] for e in bus.events] == [f"SKU-{i}" for i in range(8)]
    assert terminal.basket_decoder.stats.garbage_bytes == 3 * 6
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    recoveries = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(failures) == 1 and len(recoveries) == 1  # logged once on each transition


def test_receipt_tap_over_a_pty(tmp_path: Path, bus: RecordingBus) -> None:
    async def main() -> None:
        pty = Pty(tmp_path / "edge-pos1")
        terminal, outlet = pos_terminal(bus)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outlet.run()),
                tg.create_task(reconnecting(str(pty.link), terminal.read_receipts, baudrate=9600, what="receipt")),
            ]
            data = load_hex(FIXTURES / "pos" / "receipt_corner_market.hex")
            for i in range(0, len(data), 16):
                pty.write(data[i : i + 16])
                await asyncio.sleep(0.001)
            await until(lambda: len(bus.events) == 1)
            for task in tasks:
                task.cancel()
        pty.unplug()

    asyncio.run(main())
    (order,) = bus.events
    assert order["event"] == "Order Completed"
    assert order["properties"] == {
        "products": [
            {"name": "Oat Milk 1L", "quantity": 2, "price": 1.99, "sku": "OAT-1L"},
            {"name": "Bananas 6pk", "quantity": 1, "price": 1.49},
            {"name": "Crème Fraîche", "quantity": 1, "price": 2.29, "sku": "CRF-200"},
        ],
        "source": "receipt",
        "receiptCheck": "ok",
        "total": 7.76,
        "revenue": 7.76,
        "identifiers": {"loyaltyId": "6012345678901234"},
    }
