"""Device-path benchmark: parser throughput and the CPU share of a busy store's device inputs.

    .venv/bin/python bench/devices.py [--seconds 10]

Pins itself to one core (like ``taskset -c 0``; a stand-in for a Pi core, see PERFORMANCE.md)
and prints, next to each figure, the bare part measured in the same run:

* parser throughput: advertisements/s through ``parse_advertisement`` (iBeacon + Eddystone mix)
  and basket frames/s through ``FrameDecoder``, against a bare ``struct.unpack`` of the same bytes;
* the load test: 100 advertisements/s from 200 devices (app iBeacons resolved by rotating id,
  TLM, UID) through ``BleIngest`` → ``EventOutlet`` → a counting bus, plus a 640×360 camera at
  2 fps (QR reading + audience counting) — process CPU seconds per wall second, target < 20 %
  of one core; the bare OpenCV and zbar calls on the same frames are the baseline;
* the receipt tap: KiB/s of printer stream through ``ReceiptDecoder`` against a bare decode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402

from devices.ble.adapter import BleIngest  # noqa: E402
from devices.ble.health import BeaconHealth  # noqa: E402
from devices.ble.presence import PresenceSettings, PresenceTracker  # noqa: E402
from devices.ble.protocol import EDDYSTONE_SERVICE_UUID, parse_advertisement  # noqa: E402
from devices.ble.rotating import RotatingIdResolver, major_minor, window_index  # noqa: E402
from devices.ble.scanner import Advertisement  # noqa: E402
from devices.camera.adapter import CameraPipeline  # noqa: E402
from devices.camera.audience import AudienceCounter  # noqa: E402
from devices.camera.qr import sharpen  # noqa: E402
from devices.camera.signin import TokenVerifier  # noqa: E402
from devices.outlet import EventOutlet  # noqa: E402
from devices.pos.protocol import FrameDecoder, ItemAdded, encode_frame  # noqa: E402
from devices.pos.receipt import ReceiptDecoder  # noqa: E402
from devices.sim.frames import Scene  # noqa: E402
from edge.bus import PublishResult, Source  # noqa: E402

APP_UUID = uuid.UUID("6f1c3a52-7e1b-4c8e-9a0d-5e2b8c4d1f70")


class CountingBus:
    def __init__(self) -> None:
        self.events = 0

    async def publish(self, source: Source, events: Sequence[Mapping[str, Any]]) -> PublishResult:
        self.events += len(events)
        return PublishResult(accepted=len(events))


def rate(fn: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def _ibeacon(major: int, minor: int) -> bytes:
    return b"\x02\x15" + APP_UUID.bytes + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + b"\xc5"


def _fleet(keys: list[bytes], now: float) -> list[Advertisement]:
    """200 devices: 100 opted-in phones, 50 TLM beacons, 50 UID beacons."""
    ads = []
    for i, key in enumerate(keys):
        ads.append(Advertisement(f"7A:00:00:00:{i // 256:02X}:{i % 256:02X}",
                                 {0x004C: _ibeacon(*major_minor(key, window_index(now, 900)))}, {}, -60))  # fmt: skip
    tlm = bytes.fromhex("20000BB81780000012340000303 9".replace(" ", ""))
    uid = bytes.fromhex("00E7EDD1EBEAC04E5DEFA0170BDB87C58CE60000")
    for i in range(50):
        ads.append(Advertisement(f"C0:FF:EE:00:01:{i:02X}", {}, {EDDYSTONE_SERVICE_UUID: tlm}, -70))
        ads.append(Advertisement(f"C0:FF:EE:00:02:{i:02X}", {}, {EDDYSTONE_SERVICE_UUID: uid}, -75))
    return ads


def parsers() -> None:
    samples = [
        ({0x004C: _ibeacon(1, 2)}, {}),
        ({}, {EDDYSTONE_SERVICE_UUID: bytes.fromhex("2000 0BB8 1780 00001234 00003039".replace(" ", ""))}),
        ({}, {EDDYSTONE_SERVICE_UUID: bytes.fromhex("00E7EDD1EBEAC04E5DEFA0170BDB87C58CE60000")}),
        ({}, {EDDYSTONE_SERVICE_UUID: bytes.fromhex("10EC016578616D706C6507")}),
    ]
    i = 0

    def parse_one() -> None:
        nonlocal i
        manufacturer, service = samples[i % 4]
        parse_advertisement(manufacturer, service)
        i += 1

    raw = _ibeacon(1, 2)
    bare = rate(lambda: struct.unpack_from(">16sHHb", raw, 2), 200_000)
    ads = rate(parse_one, 200_000)
    print(
        f"BLE parser        {ads:12,.0f} advertisements/s   (bare struct.unpack {bare:,.0f}/s; ratio {ads / bare:.2f})"
    )
    stream = b"".join(encode_frame(ItemAdded(f"SKU-{n}", 1 + n % 3, 100 + n)) for n in range(1000))
    decoder = FrameDecoder()
    started = time.perf_counter()
    for _ in range(20):
        decoder.feed(stream)
    frames = 20_000 / (time.perf_counter() - started)
    bare_split = rate(lambda: stream.split(b"\x03"), 2_000) * 1000
    print(
        f"POS frame decoder {frames:12,.0f} frames/s           (bare bytes.split {bare_split:,.0f} frames/s; ratio {frames / bare_split:.3f})"
    )
    receipt = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pos" / "receipt_corner_market.hex"
    one = bytes.fromhex(" ".join(line.split("#", 1)[0] for line in receipt.read_text().splitlines()))
    tape = one * 200
    receipts = ReceiptDecoder()
    started = time.perf_counter()
    receipts.feed(tape)
    kib_s = len(tape) / 1024 / (time.perf_counter() - started)
    bare_kib_s = rate(lambda: tape.decode("cp437").splitlines(), 50) * len(tape) / 1024
    print(f"receipt tap       {kib_s:12,.0f} KiB/s              (bare decode + splitlines {bare_kib_s:,.0f} KiB/s;"
          f" a 9600 baud line carries 0.9 KiB/s)")  # fmt: skip


async def load(seconds: float) -> None:
    now = [time.time()]
    keys = [os.urandom(32) for _ in range(100)]
    bus = CountingBus()
    outlet = EventOutlet(bus)  # type: ignore[arg-type]
    tokens = [(f"ct_{n:032x}", key) for n, key in enumerate(keys)]
    ingest = BleIngest(
        store_id="s1", scanner_id="ble-1", zone_id="store", app_uuid=APP_UUID,
        resolver=RotatingIdResolver(lambda: tokens, 900), presence=PresenceTracker(PresenceSettings()),
        health=BeaconHealth(2500, 600), outlet=outlet, publisher=None, topic_root="retail/v1/s1/",
        clock=lambda: now[0],
    )  # fmt: skip
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    camera = CameraPipeline(
        store_id="s1", device_id="cam-1", outlet=outlet, clock=lambda: now[0],
        verifier=TokenVerifier(Ed25519PrivateKey.generate().public_key(), lambda: now[0]),
        counter=AudienceCounter(), report_interval_s=30,
    )  # fmt: skip
    scene = Scene(1)
    frames = [scene.frame(3) for _ in range(40)]  # generated before measuring: not the device path
    ads = _fleet(keys, now[0])

    # baseline: the bare OpenCV and zbar calls the camera path makes, on the same frames (no
    # code in them, so every QR step runs: zbar, zbar on a sharpened frame, OpenCV's detector)
    from pyzbar import pyzbar

    model = cv2.createBackgroundSubtractorMOG2(detectShadows=False)
    detector = cv2.QRCodeDetectorAruco()
    started = time.process_time()
    for frame in frames[:20]:
        small = cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)
        model.apply(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
        pyzbar.decode(sharpen(gray), symbols=[pyzbar.ZBarSymbol.QRCODE])
        detector.detectAndDecode(gray)
    bare_frame_s = (time.process_time() - started) / 20

    async def radio() -> None:
        n = 0
        while True:
            started = time.monotonic()
            for _ in range(10):  # 100/s in bursts of 10 every 0.1 s
                ingest.on_advertisement(ads[n % len(ads)])
                n += 1
            now[0] = time.time()
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    async def frames_at_2fps() -> None:
        n = 0
        while True:
            started = time.monotonic()
            await camera.on_frame(frames[n % len(frames)])
            n += 1
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))

    async def ticks() -> None:
        while True:
            await asyncio.sleep(1.0)
            ingest.tick()

    async with asyncio.TaskGroup() as tasks:
        workers = [tasks.create_task(c) for c in (radio(), frames_at_2fps(), ticks(), outlet.run())]
        await asyncio.sleep(2.0)  # warm-up: model learns the scene, index built
        cpu0, wall0, ads0, frames0 = time.process_time(), time.monotonic(), ingest.advertisements, camera.frames
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        n_ads, n_frames = ingest.advertisements - ads0, camera.frames - frames0
        for worker in workers:
            worker.cancel()
    camera.close()
    share = cpu / wall
    bare_share = bare_frame_s * n_frames / wall
    print(
        f"load: {n_ads / wall:.0f} advertisements/s from 200 devices + camera {n_frames / wall:.1f} fps, {wall:.1f} s"
    )
    print(f"  device path CPU  {share * 100:5.1f} % of one core   (target < 20 %)")
    print(f"  bare OpenCV part {bare_share * 100:5.1f} % of one core   (resize + MOG2 + zbar ×2 + QR detect, same frames;"
          f" ratio {share / bare_share:.2f})")  # fmt: skip
    print(f"  events published {bus.events}, dropped {outlet.dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # like taskset -c 0
    cv2.setNumThreads(1)
    print(f"pinned to CPU {sorted(os.sched_getaffinity(0))}; Python {sys.version.split()[0]}; OpenCV {cv2.__version__}")
    parsers()
    asyncio.run(load(args.seconds))


if __name__ == "__main__":
    main()
