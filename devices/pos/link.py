"""A serial port as an async context manager; blocking pyserial calls run in its own thread.

Each :class:`SerialLink` owns a one-thread executor, so a read blocked on the port never holds up
the event loop or another port. pyserial's exceptions become :class:`DeviceUnavailable` here;
the reconnect loop lives outside (:func:`reconnecting`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import serial

from devices.errors import DeviceUnavailable
from devices.status import TransitionLog
from edge.backoff import backoff_delay, raise_if_cancelled

__all__ = ["SerialLink", "reconnecting"]

log = logging.getLogger(__name__)


class _KeepInputSerial(serial.Serial):
    """pyserial discards the kernel's input buffer on open; after a replug that buffer holds
    frames the till sent while we were reconnecting, so keep them."""

    def _reset_input_buffer(self) -> None:
        return None


class SerialLink:
    def __init__(self, path: str, *, baudrate: int = 9600, read_timeout_s: float = 0.2) -> None:
        self.path = path
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self._port: Any = None
        self._executor: ThreadPoolExecutor | None = None

    async def _call(self, fn: Callable[[], Any]) -> Any:
        assert self._executor is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial reading a port closed under it
            raise DeviceUnavailable(f"serial port {self.path}: {exc}") from exc

    async def __aenter__(self) -> SerialLink:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"serial:{self.path}")

        def open_port() -> Any:
            return _KeepInputSerial(
                self.path, self.baudrate, timeout=self.read_timeout_s, write_timeout=2.0, exclusive=True
            )

        try:
            self._port = await self._call(open_port)
        except DeviceUnavailable:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        port, executor = self._port, self._executor
        self._port = self._executor = None
        if executor is None:
            return
        if port is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(executor, port.close)
            except (serial.SerialException, OSError):
                pass
        executor.shutdown(wait=False)

    async def read(self) -> bytes:
        """What arrived, possibly empty after the read timeout; raises DeviceUnavailable."""
        port = self._port

        def read_some() -> bytes:
            return bytes(port.read(max(1, port.in_waiting)))

        return bytes(await self._call(read_some))

    async def write(self, data: bytes) -> None:
        port = self._port

        def write_all() -> None:
            port.write(data)
            port.flush()

        await self._call(write_all)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            data = await self.read()
            if data:
                yield data


async def reconnecting(
    path: str,
    use: Callable[[SerialLink], Awaitable[None]],
    *,
    baudrate: int,
    what: str,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Open ``path``, run ``use(link)``, reopen after unplug with backoff; forever."""
    status = TransitionLog(what, log)
    attempt = 0
    while True:
        try:
            async with SerialLink(path, baudrate=baudrate) as link:
                status.recovered()
                attempt = 0
                await use(link)
        except DeviceUnavailable as exc:
            status.failed(str(exc))
        raise_if_cancelled()
        await sleep(backoff_delay(attempt, base_s=0.2, cap_s=max_backoff_s))
        attempt += 1
