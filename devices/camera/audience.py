"""Anonymous audience counting: background subtraction, blobs, nearest-neighbour tracks.

Works offline with no downloaded weights (this OpenCV build has no HOG people detector). Each
frame is scaled to ``width`` px, blurred, passed through a MOG2 background model; foreground
blobs larger than ``min_area_px`` are people, matched frame to frame by nearest centroid to
measure dwell. Limits (devices/README.md): people standing still merge into the background after
roughly ``history`` frames; people walking close together count as one blob; a camera that
moves or a sudden lighting change counts as motion until the model relearns. Nothing but
counts and durations leaves this object; frames are dropped after processing.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["AudienceCounter", "AudienceSample"]

_WARMUP_FRAMES = 3


@dataclass(frozen=True, slots=True)
class AudienceSample:
    count: int  # median people in view over the interval
    dwell_s: float  # mean time in view of the people seen during the interval


@dataclass(slots=True)
class _Track:
    x: float
    y: float
    first_s: float
    last_s: float
    sightings: int = 1


class AudienceCounter:
    def __init__(
        self,
        *,
        width: int = 320,
        min_area_px: int = 300,
        history: int = 200,
        max_jump_px: float = 60.0,
        lost_after_s: float = 2.0,
    ) -> None:
        self.width = width
        self.min_area_px = min_area_px
        self.max_jump_px = max_jump_px
        self.lost_after_s = lost_after_s
        self._model = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=25, detectShadows=False)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._tracks: dict[int, _Track] = {}
        self._ids = itertools.count()
        self._counts: list[int] = []
        self._ended: list[float] = []
        self._frames = 0
        self._history = history

    def _learning_rate(self, now_s: float) -> float:
        # learn the empty scene fast at first, then slowly so people walking to and fro over the
        # same spot do not fade into the background
        self._frames += 1
        return 1.0 / self._frames if self._frames < 10 else 1.0 / self._history

    def process(self, frame: np.ndarray, now_s: float) -> int:
        """People in view in ``frame``; updates the tracks."""
        height = max(1, round(frame.shape[0] * self.width / frame.shape[1]))
        small = cv2.resize(frame, (self.width, height), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        gray = cv2.GaussianBlur(gray, (5, 5), 0)
        mask = self._model.apply(gray, learningRate=self._learning_rate(now_s))
        _, mask = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        if self._frames <= _WARMUP_FRAMES:  # the model has not seen the scene yet
            return 0
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        centroids = []
        for contour in contours:
            if cv2.contourArea(contour) < self.min_area_px:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            centroids.append((x + w / 2, y + h / 2))
        self._match(centroids, now_s)
        self._counts.append(len(centroids))
        return len(centroids)

    def _match(self, centroids: list[tuple[float, float]], now_s: float) -> None:
        free = dict(self._tracks)
        for cx, cy in centroids:
            best, best_d = None, self.max_jump_px
            for track_id, t in free.items():
                d = ((t.x - cx) ** 2 + (t.y - cy) ** 2) ** 0.5
                if d <= best_d:
                    best, best_d = track_id, d
            if best is None:
                self._tracks[next(self._ids)] = _Track(cx, cy, now_s, now_s)
            else:
                track = free.pop(best)
                track.x, track.y, track.last_s = cx, cy, now_s
                track.sightings += 1
        for track_id, track in list(self._tracks.items()):
            if now_s - track.last_s > self.lost_after_s:
                if track.sightings > 1:  # a blob seen once is noise, not a visitor
                    self._ended.append(track.last_s - track.first_s)
                del self._tracks[track_id]

    def report(self, now_s: float) -> AudienceSample:
        """The sample for the interval since the last report; starts a new interval."""
        count = round(statistics.median(self._counts)) if self._counts else 0
        dwells = self._ended + [t.last_s - t.first_s for t in self._tracks.values() if t.sightings > 1]
        self._counts.clear()
        self._ended.clear()
        return AudienceSample(count, round(sum(dwells) / len(dwells), 1) if dwells else 0.0)
