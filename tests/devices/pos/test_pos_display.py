"""The pole display's byte stream, rendered by a 2×20 display emulator written here.

The emulator interprets the two command sets as their manuals define them (Epson DM-D
customer-display commands; the CD5220 standard mode) and refuses any byte it does not know,
so the test sees what a customer would see: the screen after open, after each offer, after
``Order Completed``, after an idle timeout and after the display is unplugged and plugged back.
Its character tables are its own (Python's codecs by ESC t number), not the gateway's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from devices_helpers import Pty, RecordingBus, pos_terminal, until
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.pos.display import DisplaySettings, PoleDisplay
from devices.pos.link import SerialLink, reconnecting
from devices.pos.protocol import ItemAdded, OrderCompleted, encode_frame

_EPSON_TABLES = {0: "cp437", 2: "cp850", 16: "cp1252", 19: "cp858"}
_UK = {0x23: "£"}


class DisplayEmulator:
    """A 2×20 VFD: a screen, a cursor, a mode; strict about every byte."""

    def __init__(self, command_set: str) -> None:
        self.command_set = command_set
        self.rows = [[" "] * 20 for _ in range(2)]
        self.x = self.y = 0
        self.cursor_visible = True
        self.mode = "unset"
        self.initialised = 0
        self.table = "cp437"
        self.national: dict[int, str] = {}
        self._buffer = b""

    @property
    def screen(self) -> tuple[str, str]:
        return "".join(self.rows[0]), "".join(self.rows[1])

    def _reset(self) -> None:
        self.rows = [[" "] * 20 for _ in range(2)]
        self.x = self.y = 0
        self.cursor_visible, self.mode, self.table, self.national = True, "overwrite", "cp437", {}
        self.initialised += 1

    def _clear(self) -> None:
        self.rows = [[" "] * 20 for _ in range(2)]
        self.x = self.y = 0

    def _put(self, byte: int) -> None:
        char = self.national.get(byte) or bytes([byte]).decode(self.table if self.command_set == "epson" else "ascii")
        self.rows[self.y][self.x] = char
        self.x += 1
        if self.x == 20:  # overwrite mode: wrap to the next row's start
            self.x, self.y = 0, (self.y + 1) % 2

    def feed(self, data: bytes) -> None:
        data = self._buffer + data
        i = 0
        while i < len(data):
            used = self._command(data, i)
            if used == 0:
                break
            i += used
        self._buffer = data[i:]

    def _command(self, d: bytes, i: int) -> int:
        """Bytes used by the command at ``i`` (0: incomplete)."""
        b = d[i]
        rest = len(d) - i
        if b == 0x0C:
            self._clear()
            return 1
        if 0x20 <= b != 0x7F:
            self._put(b)
            return 1
        if self.command_set == "epson":
            if b == 0x1B and rest >= 2 and d[i + 1] == 0x40:
                self._reset()
                return 2
            if b == 0x1B and rest >= 2 and d[i + 1] in (0x74, 0x52):
                if rest < 3:
                    return 0
                if d[i + 1] == 0x74:
                    self.table = _EPSON_TABLES[d[i + 2]]
                else:
                    self.national = {0: {}, 3: _UK}[d[i + 2]]
                return 3
            if b == 0x1F and rest >= 2:
                if d[i + 1] == 0x01:
                    self.mode = "overwrite"
                    return 2
                if d[i + 1] == 0x43:
                    if rest < 3:
                        return 0
                    self.cursor_visible = d[i + 2] == 1
                    return 3
                if d[i + 1] == 0x24:
                    if rest < 4:
                        return 0
                    self.x, self.y = d[i + 2] - 1, d[i + 3] - 1
                    return 4
        else:
            if b == 0x1B and rest >= 2:
                command = d[i + 1]
                if command == 0x40:
                    self._reset()
                    return 2
                if command == 0x11:
                    self.mode = "overwrite"
                    return 2
                if command in (0x5F, 0x66):
                    if rest < 3:
                        return 0
                    if command == 0x5F:
                        self.cursor_visible = d[i + 2] == 1
                    else:
                        self.national = {ord("A"): {}, ord("U"): _UK}[d[i + 2]]
                    return 3
                if command == 0x6C:
                    if rest < 4:
                        return 0
                    self.x, self.y = d[i + 2] - 1, d[i + 3] - 1
                    return 4
        if rest < 4:
            return 0
        raise AssertionError(f"the {self.command_set} display does not know the bytes {d[i : i + 4].hex(' ')}")


OFFERS = {
    ("OAT-1L",): "Crème brûlée 2 for €5 – today only!",
    ("BAN-6", "OAT-1L"): "£1 off Oat Milk #2",
    ("TEA-20",): "Free biscuit with tea",
}
CASES = {
    # command set, code page, country → expected rows per offer
    "epson-cp858": (DisplaySettings("epson", "cp858", "usa"), {
        "OAT-1L": ("Crème brûlée 2 for  ", "€5 - today only!    "),
        "BAN-6": ("£1 off Oat Milk #2  ", "                    "),
    }),
    "cd5220-uk": (DisplaySettings("cd5220", None, "uk"), {
        "OAT-1L": ("Creme brulee 2 for  ", "EUR5 - today only!  "),
        "BAN-6": ("£1 off Oat Milk ?2  ", "                    "),
    }),
}  # fmt: skip
BLANK = (" " * 20, " " * 20)


@pytest.mark.parametrize("case", sorted(CASES))
def test_screen_after_open_offers_order_idle_and_replug(case: str, tmp_path: Path, bus: RecordingBus) -> None:
    settings, expected = CASES[case]

    async def decide(source: Any, request: dict[str, Any]) -> dict[str, Any]:
        title = OFFERS.get(tuple(request["basket"]))
        return {"offers": [{"offerId": "o1", "title": title}] if title else []}

    async def main() -> list[tuple[str, Any]]:
        seen: list[tuple[str, Any]] = []
        emulator = DisplayEmulator(settings.command_set)
        basket, display = Pty(tmp_path / "edge-pos0"), Pty(tmp_path / "edge-display0")
        terminal, outlet = pos_terminal(bus, decide, display=PoleDisplay(settings), display_idle_s=1.5)

        async def screen(rows: tuple[str, str], initialised: int) -> None:
            def shows() -> bool:
                emulator.feed(display.read_available(0.01))
                return emulator.screen == rows and emulator.initialised == initialised

            await until(shows)
            seen.append((rows[0].strip() or "<blank>", emulator.cursor_visible))

        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outlet.run()),
                tg.create_task(reconnecting(str(basket.link), terminal.read_basket, baudrate=9600, what="basket")),
                tg.create_task(reconnecting(str(display.link), terminal.drive_display, baudrate=9600,
                                            what="display", max_backoff_s=0.3)),
            ]  # fmt: skip
            await screen(BLANK, 1)  # open: initialised, blank, cursor off, overwrite mode
            assert (emulator.cursor_visible, emulator.mode) == (False, "overwrite")
            basket.write(encode_frame(ItemAdded("OAT-1L", 1, 199)))
            await screen(expected["OAT-1L"], 1)
            basket.write(encode_frame(ItemAdded("BAN-6", 1, 149)))
            await screen(expected["BAN-6"], 1)
            basket.write(encode_frame(OrderCompleted("T1-1", 348)))
            await screen(BLANK, 1)  # the last customer's offer is gone
            basket.write(encode_frame(ItemAdded("OAT-1L", 1, 199)))
            await screen(expected["OAT-1L"], 1)
            display.unplug()  # the display's USB cable is pulled and plugged back in
            await asyncio.sleep(0.3)
            display.plug()
            emulator = DisplayEmulator(settings.command_set)  # a display powers up blank
            await screen(expected["OAT-1L"], 1)  # re-initialised, the open basket's offer back
            assert emulator.cursor_visible is False
            await screen(BLANK, 1)  # idle timeout
            for task in tasks:
                task.cancel()
        basket.unplug()
        display.unplug()
        return seen

    seen = asyncio.run(main())
    assert [row for row, _ in seen] == ["<blank>", expected["OAT-1L"][0].strip(), expected["BAN-6"][0].strip(),
                                        "<blank>", expected["OAT-1L"][0].strip(), expected["OAT-1L"][0].strip(),
                                        "<blank>"]  # fmt: skip
    assert not any(visible for _, visible in seen)


@settings(max_examples=200, deadline=None)
@given(title=st.text(max_size=80), command_set=st.sampled_from(["epson", "cd5220"]),
       country=st.sampled_from(["usa", "uk"]))  # fmt: skip
def test_any_title_renders_within_two_rows_of_twenty(title: str, command_set: str, country: str) -> None:
    display = PoleDisplay(DisplaySettings(command_set, "cp858", country))  # type: ignore[arg-type]
    emulator = DisplayEmulator(command_set)
    emulator.feed(display.initialise() + display.offer(title))
    assert emulator.initialised == 1 and all(len(row) == 20 for row in emulator.screen)
    if title.strip():
        assert emulator.screen != BLANK or not display.fit(title).strip()


def test_a_stop_that_arrives_with_a_basket_change_still_stops_the_display(tmp_path: Path, bus: RecordingBus) -> None:
    """The display loop waits for the next basket change with a timeout (its unplug probe).
    Python 3.11's ``asyncio.wait_for`` returns the awaited result when a cancellation arrives
    in the same loop round as the event it waits for (python/cpython#86296): the loop, its
    cancellation lost, then ran on for ever and a gateway stop waited on it. The wait is now an
    ``asyncio.timeout`` block, which delivers the cancellation whatever else is ready."""

    async def main() -> bool:
        display = Pty(tmp_path / "edge-display0")
        terminal, _ = pos_terminal(bus, None, display=PoleDisplay(DisplaySettings()), display_idle_s=60.0)
        async with SerialLink(str(display.link), baudrate=9600) as link:
            task = asyncio.create_task(terminal.drive_display(link))
            await until(lambda: bool(display.read_available(0.01)))  # initialised: now waiting
            await asyncio.sleep(0.05)
            terminal._want_offer()  # a basket change and the stop in the same loop round
            task.cancel()
            await asyncio.wait({task}, timeout=3.0)
            stopped = task.cancelled()  # read here: asyncio.run cancels whatever is left
        display.unplug()
        return stopped

    assert asyncio.run(main()), "the display loop went on after it was cancelled"
