"""Helpers for the device tests: fixture loading, fuzz sizing, a recording bus and publisher."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.bus import PublishResult, Source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_hex(path: Path) -> bytes:
    lines = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    return bytes.fromhex(" ".join(lines))


def fuzz_cases(local: int = 1500) -> int:
    return 10_000 if os.environ.get("CI") else local


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
