"""Reading QR codes from camera frames: zbar, then zbar on a sharpened frame, then OpenCV.

The order comes from the degradation matrix in ``tests/devices/camera/test_camera_qr.py`` (size, blur,
rotation, perspective, contrast, JPEG noise; codes from ``qrcode`` and ``segno``): zbar reads
small and blurred codes OpenCV's detectors miss, an unsharp mask lets it read codes blurred at
σ ≈ 2 px, and OpenCV's ``QRCodeDetectorAruco`` reads strongly tilted codes (perspective) zbar
does not; OpenCV's plain ``QRCodeDetector`` added nothing. Each step runs only when the previous
one read nothing, so a frame without a code costs all three (≈ 10–15 ms at 640×480) and a
readable code usually one (≈ 3 ms).

zbar is ``pyzbar`` over Debian's ``libzbar0``; where the library is missing the reader logs once
and uses OpenCV alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

__all__ = ["QrReader", "sharpen"]

log = logging.getLogger(__name__)
Decoder = Callable[[np.ndarray], str]


def sharpen(gray: np.ndarray, amount: float = 1.5, sigma: float = 2.0) -> np.ndarray:
    """Unsharp mask: ``gray + amount · (gray − blur(gray))``."""
    blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
    return cv2.addWeighted(gray, 1 + amount, blurred, -amount, 0)


def _zbar() -> Decoder | None:
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError) as exc:  # pyzbar raises ImportError when libzbar.so.0 is missing
        log.warning("zbar is not available (%s); reading QR codes with OpenCV only", exc)
        return None
    symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(gray: np.ndarray) -> str:
        for symbol in pyzbar.decode(gray, symbols=symbols):
            try:
                return str(symbol.data.decode("utf-8"))
            except UnicodeDecodeError:
                continue
        return ""

    return decode


def _opencv() -> Decoder:
    detector = cv2.QRCodeDetectorAruco()

    def decode(gray: np.ndarray) -> str:
        text, _points, _ = detector.detectAndDecode(gray)
        return str(text or "")

    return decode


class QrReader:
    """``read(frame)`` → the first QR code's text, or ``""``. Not thread-safe: one per camera."""

    def __init__(self, *, use_zbar: bool = True) -> None:
        zbar = _zbar() if use_zbar else None
        opencv = _opencv()
        steps: list[tuple[str, Decoder]] = []
        if zbar is not None:
            steps += [("zbar", zbar), ("zbar_sharpened", lambda gray: zbar(sharpen(gray)))]
        steps.append(("opencv", opencv))
        self.steps = steps
        self.reads: dict[str, int] = {name: 0 for name, _ in steps}

    def read(self, frame: Any) -> str:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        for name, decode in self.steps:
            text = decode(gray)
            if text:
                self.reads[name] += 1
                return text
        return ""
