"""Camera frames → sign-in events and anonymous audience counts.

:meth:`CameraPipeline.on_frame` is the frame path for the real camera and the simulator alike.
The OpenCV work (QR detection, background subtraction) runs in the camera's own executor thread;
the frame is dropped when the call returns — never stored, written or sent.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from devices.camera.audience import AudienceCounter
from devices.camera.qr import QrReader
from devices.camera.signin import TokenVerifier
from devices.errors import TokenRejected
from devices.events import track
from devices.outlet import EventOutlet
from edge.bus import Source
from edge.component import Clock

__all__ = ["CameraPipeline"]

log = logging.getLogger(__name__)


class CameraPipeline:
    def __init__(
        self,
        *,
        store_id: str,
        device_id: str,
        outlet: EventOutlet,
        clock: Clock,
        verifier: TokenVerifier | None,
        counter: AudienceCounter | None,
        report_interval_s: float = 30.0,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.source = Source(store_id, device_id, "camera", "camera")
        self._outlet = outlet
        self._clock = clock
        self._verifier = verifier
        self._counter = counter
        self._report_interval_s = report_interval_s
        self._reader = QrReader() if verifier is not None else None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix=f"camera:{device_id}")
        self._next_report: float | None = None
        self._last_text = ""
        self.refused: dict[str, int] = {}
        self.signins = 0
        self.frames = 0

    async def on_frame(self, frame: np.ndarray) -> None:
        now = self._clock()
        text = await asyncio.get_running_loop().run_in_executor(self.executor, self._analyse, frame, now)
        del frame
        if text:
            self._sign_in(text, now)
        if self._counter is not None:
            if self._next_report is None:
                self._next_report = now + self._report_interval_s
            elif now >= self._next_report:
                self._next_report = now + self._report_interval_s
                sample = self._counter.report(now)
                properties = {"count": sample.count, "dwellSeconds": sample.dwell_s}
                self._outlet.offer(self.source, track("Audience Measured", now, properties))

    def _analyse(self, frame: np.ndarray, now: float) -> str:
        self.frames += 1
        if self._counter is not None:
            self._counter.process(frame, now)
        if self._reader is None:
            return ""
        return self._reader.read(frame)

    def _sign_in(self, text: str, now: float) -> None:
        if text == self._last_text:  # the same code held up across frames: one sign-in
            return
        self._last_text = text
        assert self._verifier is not None
        try:
            token = self._verifier.verify(text)
        except TokenRejected as exc:
            self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
            log.info("QR sign-in refused: %s", exc.reason)
            return
        self.signins += 1
        properties = {"method": "qr", "identifiers": {"appId": token.app_id}}
        self._outlet.offer(self.source, track("Customer Identified", now, properties))

    def close(self) -> None:
        self.executor.shutdown(wait=False)
