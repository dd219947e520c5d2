"""A camera as an async context manager: V4L2 index or path, video file or RTSP URL.

``cv2.VideoCapture`` blocks, so it lives in the camera's own one-thread executor; frames are read
at the configured low rate and handed on in memory only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from devices.errors import DeviceUnavailable

__all__ = ["VideoSource"]


def _open(target: int | str) -> cv2.VideoCapture:
    """A device index or a file/stream URI: cv2.VideoCapture's two overloads as one callable."""
    return cv2.VideoCapture(target)


class VideoSource:
    def __init__(self, uri: str, *, fps: float = 2.0, executor: ThreadPoolExecutor | None = None) -> None:
        self.uri = uri
        self.fps = fps
        self._executor = executor
        self._own_executor = executor is None
        self._capture: Any = None

    def _target(self) -> int | str:
        return int(self.uri) if self.uri.isdigit() else self.uri

    async def __aenter__(self) -> VideoSource:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="camera")
        loop = asyncio.get_running_loop()
        capture = await loop.run_in_executor(self._executor, _open, self._target())
        if not capture.isOpened():
            await loop.run_in_executor(self._executor, capture.release)
            raise DeviceUnavailable(f"cannot open camera {self._describe()}")
        self._capture = capture
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        capture, self._capture = self._capture, None
        if capture is not None and self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, capture.release)
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _describe(self) -> str:
        # RTSP URLs can carry credentials: name only the scheme and host part.
        if "://" in self.uri:
            scheme, rest = self.uri.split("://", 1)
            return f"{scheme}://{rest.split('@')[-1].split('/')[0]}"
        return self.uri

    async def frames(self) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        while True:
            started = time.monotonic()
            ok, frame = await loop.run_in_executor(self._executor, self._capture.read)
            if not ok or frame is None:
                raise DeviceUnavailable(f"camera {self._describe()} stopped delivering frames")
            yield frame
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
