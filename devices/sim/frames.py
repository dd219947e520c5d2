"""Generated camera frames: a textured shop floor, people as moving shapes, an optional QR code.

Used by the simulator, the tests and the benchmark; frames exist only in memory.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["Scene", "qr_image"]

WIDTH, HEIGHT = 640, 360
_LANE = 160  # each person walks back and forth in their own 160 px wide lane


def qr_image(text: str, scale: int = 5) -> np.ndarray:
    """A QR code as a grayscale image with a white quiet zone."""
    code = cv2.QRCodeEncoder.create().encode(text)
    code = cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return cv2.copyMakeBorder(code, 16, 16, 16, 16, cv2.BORDER_CONSTANT, value=255)


class Scene:
    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)
        floor = self._rng.integers(60, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        self.background = cv2.GaussianBlur(floor, (7, 7), 0)
        self._frame_no = 0

    def frame(self, people: int, qr_text: str | None = None) -> np.ndarray:
        """The next frame with ``people`` (≤ 4) walking, each in a lane, and maybe a QR code."""
        frame = self.background.copy()
        k = self._frame_no
        self._frame_no += 1
        for i in range(min(people, WIDTH // _LANE)):
            span = _LANE - 40
            step = (k * (6 + 2 * i)) % (2 * span)
            x = i * _LANE + (step if step < span else 2 * span - step)
            y = 60 + 30 * (i % 2)
            cv2.rectangle(frame, (x, y + 24), (x + 30, y + 200), (200, 180, 170), -1)
            cv2.circle(frame, (x + 15, y + 12), 13, (190, 170, 160), -1)
        if qr_text is not None:
            code = qr_image(qr_text)
            h, w = code.shape
            frame[HEIGHT - h - 4 : HEIGHT - 4, WIDTH - w - 4 : WIDTH - 4] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
        noise = self._rng.normal(0, 3, frame.shape)
        noisy: np.ndarray = np.clip(frame + noise, 0, 255).astype(np.uint8)
        return noisy
