"""What the ops dashboard shows: ``GET /v1/ops/overview`` (ops role).

Devices come from the registry joined with what the ingest stream last saw of each device
(kept in memory by :class:`DeviceWatch`, an ingest listener; no journal scan per request):
last seen, last ``Device Status``, beacon battery. Rates and p99 come from the gateway's own
Prometheus registry, sampled at each call: a rate is the counter's change over the last
minute of samples (``None`` until two samples exist), a p99 the histogram bucket bound under
which 99 % of the observations since the start fall. Consent and erasure counts are read from
their tables (a gateway without the decisioning feature has none and shows ``None``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from edge.events import Event
from edge.journal import Journal
from edge.registry import DeviceRegistry
from edge.types import PrivacyCounts

__all__ = ["DeviceWatch", "Overview"]

#: a device that sent nothing for this long is shown as offline (status heartbeats are 30–60 s)
ONLINE_WINDOW_S = 180.0
RATE_WINDOW_S = 60.0
_MAX_BEACONS = 500


@dataclass
class _Seen:
    last_ms: int
    status: str | None = None
    battery_mv: int | None = None
    kind: str = ""


class DeviceWatch:
    """Ingest listener (journal writer thread): the last event and status of every device."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}

    def listener(self, events: Sequence[Event]) -> None:
        with self._lock:
            for event in events:
                device = event.source.device_id
                seen = self._seen.get(device)
                if seen is None:
                    if event.source.kind == "beacon" and len(self._seen) >= _MAX_BEACONS:
                        continue  # bounded: a flood of made-up beacon ids cannot grow this
                    seen = self._seen[device] = _Seen(event.received_ms, kind=event.source.kind)
                seen.last_ms = max(seen.last_ms, event.received_ms)
                if event.name == "Device Status":
                    props = event.body.get("properties", {})
                    status = props.get("status")
                    seen.status = status if isinstance(status, str) else seen.status
                    battery = props.get("batteryMv")
                    if isinstance(battery, int) and not isinstance(battery, bool):
                        seen.battery_mv = battery

    def snapshot(self) -> dict[str, _Seen]:
        with self._lock:
            return {k: _Seen(v.last_ms, v.status, v.battery_mv, v.kind) for k, v in self._seen.items()}


class Overview:
    def __init__(self, *, registry: DeviceRegistry, journal: Journal, metrics: CollectorRegistry,
                 watch: DeviceWatch, versions: Callable[[], Mapping[str, str | None]],
                 privacy: Callable[[], PrivacyCounts] | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._privacy = privacy  # consent and erasure counts, from decisioning (None without it)
        self._registry = registry
        self._journal = journal
        self._metrics = metrics
        self._watch = watch
        self._versions = versions
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=120)

    def build(self) -> dict[str, Any]:
        """Blocking (SQLite reads); call it in a thread."""
        now = self._clock()
        privacy = self._privacy() if self._privacy is not None else None
        families = {f.name: f for f in self._metrics.collect()}
        counters = {
            "ingest": _total(families, "edge_events_accepted"),
            "decisions": _total(families, "edge_decisions"),
            "rejected": _total(families, "edge_events_rejected"),
        }
        rates = self._rates(now, counters)
        seen = self._watch.snapshot()
        devices = []
        for device in self._registry.devices():
            s = seen.pop(device.device_id, None)
            devices.append(_device_row(device.device_id, device.kind, device.enabled, s, now))
        beacons = [_device_row(k, "beacon", True, v, now) for k, v in sorted(seen.items()) if v.kind == "beacon"]
        expiry = _total(families, "edge_tls_server_cert_expiry_seconds", sample_suffix="")
        not_after = _total(families, "edge_tls_server_cert_not_after_seconds", sample_suffix="")
        return {
            "generatedAt": _iso(now),
            "devices": devices,
            "beacons": beacons,
            "rates": {
                "ingestPerS": rates["ingest"],
                "decisionsPerS": rates["decisions"],
                "rejectedPerS": rates["rejected"],
            },  # fmt: skip
            "totals": counters,
            "p99Ms": {
                "journalCommit": _p99_ms(families, "edge_journal_commit_seconds"),
                "decision": _p99_ms(families, "edge_decision_seconds"),
            },  # fmt: skip
            "rejectedByReason": _by_label(families, "edge_events_rejected", "reason"),
            "deadLetters": self._dead_letters(),
            "drops": {
                "stream": _total(families, "edge_stream_dropped"),
                "derived": _total(families, "edge_derived_events_dropped"),
                "sync": _total(families, "sync_events_dropped"),
            },  # fmt: skip
            "consent": privacy.consent if privacy else None,
            "erasures": privacy.erasures if privacy else None,
            "versions": dict(self._versions()),
            "certificate": {  # the gauges exist from the start; a gateway without TLS never sets them
                "expiresInS": expiry if not_after else None,
                "notAfter": _iso(not_after) if not_after else None,
            },
        }

    def _rates(self, now: float, counters: dict[str, float]) -> dict[str, float | None]:
        self._samples.append((now, counters))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        first_t, first = self._samples[0]
        if now - first_t <= 0:
            return dict.fromkeys(counters)
        return {k: round(max(0.0, v - first.get(k, 0.0)) / (now - first_t), 3) for k, v in counters.items()}

    def _dead_letters(self) -> dict[str, int]:
        return self._journal.dead_letter_counts()


def _device_row(device_id: str, kind: str, enabled: bool, seen: _Seen | None, now: float) -> dict[str, Any]:
    last = None if seen is None else seen.last_ms
    online = (last is not None and now - last / 1000 < ONLINE_WINDOW_S
              and (seen is None or seen.status not in ("offline", "silent")))  # fmt: skip
    return {"deviceId": device_id, "kind": kind, "enabled": enabled, "online": bool(online),
            "lastSeen": None if last is None else _iso(last / 1000),
            "status": None if seen is None else seen.status,
            "batteryMv": None if seen is None else seen.battery_mv}  # fmt: skip


def _samples(families: Mapping[str, Any], name: str) -> list[Any]:
    family = families.get(name)
    return [] if family is None else list(family.samples)


def _total(families: Mapping[str, Any], name: str, sample_suffix: str = "_total") -> float:
    wanted = name + sample_suffix
    return float(sum(s.value for s in _samples(families, name) if s.name == wanted))


def _by_label(families: Mapping[str, Any], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in _samples(families, name):
        if s.name == name + "_total":
            key = s.labels.get(label, "")
            out[key] = out.get(key, 0.0) + s.value
    return out


def _p99_ms(families: Mapping[str, Any], name: str) -> float | None:
    buckets: dict[float, float] = {}
    for s in _samples(families, name):
        if s.name == name + "_bucket":
            bound = float(s.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + s.value
    count = buckets.get(float("inf"), 0.0)
    if count <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= 0.99 * count:
            return None if bound == float("inf") else round(bound * 1000, 3)
    return None


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"
