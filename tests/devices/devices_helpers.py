"""Helpers for the device tests: fixture loading, fuzz sizing, a recording bus and publisher."""

from __future__ import annotations

import asyncio
import os
import random
import select
import tty
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devices.outlet import EventOutlet
from devices.pos.adapter import PosTerminal
from edge.bus import PublishResult, Source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_hex(path: Path) -> bytes:
    lines = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    return bytes.fromhex(" ".join(lines))


def fuzz_cases(local: int = 1500, ci: int = 10_000) -> int:
    return ci if os.environ.get("CI") else local


def fuzz_seed() -> int:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"fuzz seed {seed} (pin with FUZZ_SEED={seed})")
    return seed


class RecordingBus:
    """Implements EventBus.publish and keeps what it was given."""

    def __init__(self) -> None:
        self.batches: list[tuple[Source, list[dict[str, Any]]]] = []

    async def publish(self, source: Source, events: Sequence[Mapping[str, Any]]) -> PublishResult:
        batch = [dict(e) for e in events]
        self.batches.append((source, batch))
        return PublishResult(accepted=len(batch), message_ids=tuple(e.get("messageId", "") for e in batch))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for _, batch in self.batches for e in batch]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]


class RecordingPublisher:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | str, bool]] = []

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        self.messages.append((topic, payload, retain))


class Pty:
    """A pty pair whose slave is reached through a stable symlink, like /dev/edge-pos0."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_available(self, timeout: float = 0.05) -> bytes:
        out = b""
        while select.select([self.master], [], [], timeout)[0]:
            out += os.read(self.master, 4096)
        return out


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def pos_terminal(bus: RecordingBus, decide: Any = None, **options: Any) -> tuple[PosTerminal, EventOutlet]:
    outlet = EventOutlet(bus)
    clock = iter(range(1_790_000_000, 1_800_000_000))
    terminal = PosTerminal(
        store_id="s1", device_id="pos-1", outlet=outlet, clock=lambda: float(next(clock)), decide=decide, **options
    )
    return terminal, outlet
