"""Simulated time: a compressed clock the store simulator and the simulated adapters share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["SimClock"]


class SimClock:
    """``now()`` runs ``speed`` times faster than real time from ``start_s``."""

    def __init__(
        self,
        speed: float,
        start_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be greater than 0")
        self.speed = speed
        self.start_s = time.time() if start_s is None else start_s
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> float:
        return self.start_s + (self._monotonic() - self._origin) * self.speed

    def elapsed_s(self) -> float:
        return self.now() - self.start_s

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.speed)
