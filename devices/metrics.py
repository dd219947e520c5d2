"""Prometheus view of the device layer's counters (read at scrape time, nothing on the hot path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from devices.ble.adapter import BleIngest
    from devices.camera.adapter import CameraPipeline
    from devices.outlet import EventOutlet
    from devices.pos.adapter import PosTerminal

__all__ = ["DeviceCounts", "DevicesCollector"]


class DeviceCounts(Protocol):
    """What the collector reads (the devices component), typed here so metrics does not import it back."""

    @property
    def outlet(self) -> EventOutlet: ...
    @property
    def keys_dropped(self) -> int: ...
    @property
    def ble(self) -> BleIngest | None: ...
    @property
    def pos(self) -> PosTerminal | None: ...
    @property
    def camera(self) -> CameraPipeline | None: ...


class DevicesCollector(Collector):
    def __init__(self, component: DeviceCounts) -> None:
        self._c = component

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self._c
        outlet = CounterMetricFamily("edge_device_events", "Device events by outcome", labels=["outcome"])
        outlet.add_metric(["published"], c.outlet.published)
        outlet.add_metric(["rejected"], c.outlet.rejected)
        outlet.add_metric(["dropped_queue_full"], c.outlet.dropped)
        yield outlet
        keys = CounterMetricFamily("edge_app_presence_keys_dropped", "App presence keys not registered")
        keys.add_metric([], c.keys_dropped)
        yield keys
        if c.ble is not None:
            ble = CounterMetricFamily("edge_ble_advertisements", "BLE advertisements seen")
            ble.add_metric([], c.ble.advertisements)
            yield ble
            unknown = CounterMetricFamily("edge_ble_unknown_rotating_ids", "App iBeacon ids no registered key explains")
            unknown.add_metric([], c.ble.resolver.unknown)
            yield unknown
            errors = CounterMetricFamily("edge_ble_parse_errors", "Malformed beacon frames", labels=["reason"])
            for reason, n in c.ble.parse_errors.items():
                errors.add_metric([reason], n)
            yield errors
            inside = GaugeMetricFamily("edge_zone_occupancy", "Opted-in app users inside a zone", labels=["zone"])
            for zone, n in c.ble.presence.occupancy().items():
                inside.add_metric([zone], n)
            yield inside
        if c.pos is not None:
            stats = c.pos.basket_decoder.stats
            frames = CounterMetricFamily("edge_pos_frames", "POS basket frames", labels=["outcome"])
            frames.add_metric(["ok"], stats.frames)
            for reason, n in stats.bad_frames.items():
                frames.add_metric([reason], n)
            yield frames
            garbage = CounterMetricFamily("edge_pos_garbage_bytes", "Bytes skipped between POS frames")
            garbage.add_metric([], stats.garbage_bytes)
            yield garbage
            receipt_stats = c.pos.receipt_decoder.stats
            receipts = CounterMetricFamily(
                "edge_pos_receipts", "Receipts read from the printer tap, by total check", labels=["check"]
            )
            for check, n in receipt_stats.checks.items():
                receipts.add_metric([check], n)
            yield receipts
            unknown = CounterMetricFamily(
                "edge_pos_receipt_unknown_commands", "Unknown or malformed ESC/POS commands on the receipt line"
            )
            unknown.add_metric([], receipt_stats.unknown_commands)
            yield unknown
        if c.camera is not None:
            frames = CounterMetricFamily("edge_camera_frames", "Camera frames analysed")
            frames.add_metric([], c.camera.frames)
            yield frames
            signins = CounterMetricFamily("edge_qr_signins", "QR sign-ins by outcome", labels=["outcome"])
            signins.add_metric(["accepted"], c.camera.signins)
            for reason, n in c.camera.refused.items():
                signins.add_metric([reason], n)
            yield signins
