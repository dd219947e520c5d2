"""Micro-batching of concurrent inference requests on one executor thread.

Requests queue while an inference runs; the executor then takes up to :data:`MICRO_BATCH` of
them and scores them in one batched call. One malformed request never fails its neighbours:
if the batch call raises, its requests are scored one by one and each gets its own outcome.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

__all__ = ["MICRO_BATCH", "MicroBatcher"]

MICRO_BATCH = 32  # requests scored together at most; bounded so one run stays a few ms


class MicroBatcher:
    def __init__(
        self,
        executor: Executor,
        batch: Callable[[Sequence[Any], int | None], Sequence[Any]],
        single: Callable[..., Any],
    ) -> None:
        self._executor = executor
        self._batch = batch
        self._single = single
        self._pending: list[tuple[Any, int | None, asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()
        self._draining = False

    async def submit(self, request: Any, k: int | None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending.append((request, k, future, loop))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch = self._pending[:MICRO_BATCH]
                del self._pending[:MICRO_BATCH]
                if not batch:
                    self._draining = False
                    return
            by_k: dict[int | None, list[Any]] = {}
            for entry in batch:
                by_k.setdefault(entry[1], []).append(entry)
            for k, entries in by_k.items():
                try:
                    results: list[Any] = list(self._batch([e[0] for e in entries], k))
                except Exception:
                    results = []
                    for e in entries:
                        try:
                            results.append(self._single(*e[0], k))
                        except Exception as exc:
                            results.append(exc)
                for (_request, _k, future, loop), result in zip(entries, results, strict=True):
                    loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
