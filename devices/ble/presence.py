"""Zone presence from RSSI: trimmed mean over a window, hysteresis, exit timeout. Pure.

A subject (an opted-in app's resolved customer token) is *in* a zone when the trimmed mean of
its recent RSSI readings from that zone's scanner rises to ``enter_dbm``; it leaves when the mean
falls below ``exit_dbm`` (lower than ``enter_dbm``, so noise around one threshold cannot make it
flap) or when nothing was heard for ``exit_timeout_s``. Zones are places a scanner covers, not
distances: RSSI through shelves and bodies does not give metres.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["PresenceSettings", "PresenceTracker", "ZoneChange", "trimmed_mean"]


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    enter_dbm: float = -70.0
    exit_dbm: float = -80.0
    window_s: float = 10.0
    trim_fraction: float = 0.2
    min_samples: int = 3
    exit_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.exit_dbm >= self.enter_dbm:
            raise ValueError("exit_dbm must be lower than enter_dbm (hysteresis)")
        if not 0 <= self.trim_fraction < 0.5:
            raise ValueError("trim_fraction must be within [0, 0.5)")


@dataclass(frozen=True, slots=True)
class ZoneChange:
    """One transition. ``entered`` False means exited, with the time spent inside."""

    subject: str
    zone_id: str
    entered: bool
    at_s: float
    rssi_dbm: float | None
    dwell_s: float | None = None


@dataclass(slots=True)
class _Track:
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    inside_since: float | None = None
    last_heard: float = 0.0


def trimmed_mean(values: list[float], trim_fraction: float) -> float:
    ordered = sorted(values)
    cut = int(len(ordered) * trim_fraction)
    kept = ordered[cut : len(ordered) - cut] or ordered
    return sum(kept) / len(kept)


class PresenceTracker:
    """Feeds on (subject, zone, rssi, time) readings; yields :class:`ZoneChange` transitions."""

    def __init__(self, settings: PresenceSettings) -> None:
        self.settings = settings
        self._tracks: dict[tuple[str, str], _Track] = {}

    def observe(self, subject: str, zone_id: str, rssi_dbm: float, now_s: float) -> ZoneChange | None:
        s = self.settings
        track = self._tracks.setdefault((subject, zone_id), _Track())
        track.samples.append((now_s, rssi_dbm))
        track.last_heard = now_s
        while track.samples and track.samples[0][0] < now_s - s.window_s:
            track.samples.popleft()
        if len(track.samples) < s.min_samples:
            return None
        mean = trimmed_mean([r for _, r in track.samples], s.trim_fraction)
        if track.inside_since is None and mean >= s.enter_dbm:
            track.inside_since = now_s
            return ZoneChange(subject, zone_id, True, now_s, round(mean, 1))
        if track.inside_since is not None and mean < s.exit_dbm:
            return self._leave(subject, zone_id, track, now_s, round(mean, 1))
        return None

    def tick(self, now_s: float) -> list[ZoneChange]:
        """Exits for subjects not heard for ``exit_timeout_s``; forgets idle tracks."""
        changes = []
        for (subject, zone_id), track in list(self._tracks.items()):
            if now_s - track.last_heard < self.settings.exit_timeout_s:
                continue
            if track.inside_since is not None:
                changes.append(self._leave(subject, zone_id, track, track.last_heard, None))
            del self._tracks[(subject, zone_id)]
        return changes

    def forget(self, subject: str) -> None:
        """Erasure: drop every trace of ``subject`` without emitting anything."""
        for key in [k for k in self._tracks if k[0] == subject]:
            del self._tracks[key]

    def occupancy(self) -> dict[str, int]:
        """Subjects currently inside, per zone."""
        counts: dict[str, int] = {}
        for (_, zone_id), track in self._tracks.items():
            if track.inside_since is not None:
                counts[zone_id] = counts.get(zone_id, 0) + 1
        return counts

    def _leave(self, subject: str, zone_id: str, track: _Track, at_s: float, rssi: float | None) -> ZoneChange:
        assert track.inside_since is not None
        dwell = max(0.0, at_s - track.inside_since)
        track.inside_since = None
        track.samples.clear()
        return ZoneChange(subject, zone_id, False, at_s, rssi, round(dwell, 1))
