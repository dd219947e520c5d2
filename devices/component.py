"""The device layer as a gateway component: ``build(ctx)`` → :class:`DevicesComponent`.

``run()`` starts the enabled adapters under one ``asyncio.TaskGroup``. Adapters publish raw
event dicts through ``ctx.bus`` (via the bounded :class:`~devices.outlet.EventOutlet`) and zone
occupancy to ``retail/v1/{storeId}/zones/{zoneId}/presence`` (retained) via ``ctx.publisher``.

App presence keys arrive with the app's ``Consent Updated`` event as
``properties.appPresenceKey`` (base64url, 32 bytes). A pre-stage takes the key *out* of the
event, so it is never journaled, and holds it by messageId; a listener binds it to the event's
customer token once the identity stage has set ``userId`` and the event is committed.

In ``simulated`` mode the adapters take their inputs from the simulator in this process:
:meth:`DevicesComponent.attach_pos_ports` (pty paths), ``ble.on_advertisement`` and
``camera.on_frame``, and the clock can be replaced by the simulator's compressed clock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from devices.ble.adapter import BleIngest
from devices.ble.health import BeaconHealth
from devices.ble.presence import PresenceSettings, PresenceTracker
from devices.ble.rotating import AppKeyStore, RotatingIdResolver
from devices.ble.scanner import run_scanner
from devices.config import BleConfig, CameraConfig, PosConfig, PresenceConfig
from devices.errors import DeviceUnavailable
from devices.metrics import DevicesCollector
from devices.outlet import EventOutlet
from devices.pos.adapter import PosTerminal
from devices.pos.display import DisplaySettings, PoleDisplay
from devices.pos.link import SerialLink, reconnecting
from devices.status import TransitionLog
from edge.backoff import backoff_delay, raise_if_cancelled
from edge.bus import Source
from edge.component import GatewayContext
from edge.events import Event
from edge.types import DecideHandler, ErasureHooks, Listener, PostStage, PreStage, Writer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fastapi import APIRouter

    from devices.camera.adapter import CameraPipeline

__all__ = ["DevicesComponent", "build"]

log = logging.getLogger(__name__)
_PENDING_KEYS_MAX = 1000


class DevicesComponent:
    name = "devices"

    def __init__(
        self, ctx: GatewayContext, *, decide: DecideHandler | None = None,
        erasure: ErasureHooks | None = None,
    ) -> None:  # fmt: skip
        """``decide`` answers the POS terminal's decision requests (None: no offers);
        ``erasure`` is where the app keys and presence state join every erasure (None: call
        :meth:`forget` yourself)."""
        self._ctx = ctx
        self.store_id = ctx.store_id
        self._decide = decide
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], float] = ctx.clock
        self.outlet = EventOutlet(ctx.bus)
        self.app_keys = AppKeyStore(ctx.journal)
        self._pending_keys: OrderedDict[str, bytes] = OrderedDict()
        self.keys_dropped = 0
        self._pos_ports: asyncio.Future[tuple[str | None, str | None, str | None]] | None = None
        self.simulated_qr_signer: Ed25519PrivateKey | None = None
        self.ble = self._build_ble(_section(ctx, "ble", BleConfig), _section(ctx, "presence", PresenceConfig))
        self.pos_config = _section(ctx, "pos", PosConfig)
        self.pos = self._build_pos(self.pos_config)
        self.camera_config = _section(ctx, "camera", CameraConfig)
        self.camera = self._build_camera(self.camera_config)
        if erasure is not None:
            self._undo_erasure_hook = erasure.add_erasure_hook(self.forget)
        else:
            log.info("no erasure hooks given: call DevicesComponent.forget(token) on erasure")
        if ctx.metrics is not None:
            ctx.metrics.register(DevicesCollector(self))

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock()

    def use_clock(self, clock: Callable[[], float]) -> None:
        """The simulator's compressed clock (simulated mode only)."""
        self._clock = clock

    # -- builders --------------------------------------------------------------------------
    def _build_ble(self, ble: BleConfig, presence: PresenceConfig) -> BleIngest | None:
        self.ble_config = ble
        if ble.source == "off":
            return None
        resolver = RotatingIdResolver(self.app_keys.items, ble.rotation_window_s, lambda: self.app_keys.version)
        settings = PresenceSettings(
            presence.enter_dbm, presence.exit_dbm, presence.window_s, presence.trim_fraction,
            presence.min_samples, presence.exit_timeout_s,
        )  # fmt: skip
        return BleIngest(
            store_id=self.store_id,
            scanner_id=ble.scanner_id,
            zone_id=ble.zone_id,
            app_uuid=uuid.UUID(ble.app_uuid),
            resolver=resolver,
            presence=PresenceTracker(settings),
            health=BeaconHealth(ble.low_battery_mv, ble.silent_after_s),
            outlet=self.outlet,
            publisher=self._ctx.publisher,
            topic_root=self._ctx.topic_root,
            clock=self.now,
        )

    def _build_pos(self, pos: PosConfig) -> PosTerminal | None:
        if pos.source == "off":
            return None
        return PosTerminal(
            store_id=self.store_id,
            device_id=pos.device_id,
            outlet=self.outlet,
            clock=self.now,
            decide=self._decide_handler(),
            display=PoleDisplay(DisplaySettings(
                command_set=pos.display_command_set, code_page=pos.display_code_page,
                country=pos.display_country, width=pos.display_width,
            )),
            display_idle_s=pos.display_idle_s,
            receipt_grammar=pos.receipt_grammar(),
            receipt_code_page=pos.receipt_code_page,
        )  # fmt: skip

    def _build_camera(self, camera: CameraConfig) -> CameraPipeline | None:
        if camera.source == "off":
            return None  # and OpenCV is never imported: ~16 MB a store without a camera keeps
        # the camera's modules, and cryptography for its sign-in tokens, load with a camera only
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from devices.camera.adapter import CameraPipeline
        from devices.camera.audience import AudienceCounter
        from devices.camera.signin import NonceCache, TokenVerifier, load_public_key

        verifier = None
        if camera.qr_public_key:
            public_key = load_public_key(camera.qr_public_key)
        elif camera.source == "simulated":
            # an ephemeral demo key: the simulator in this process signs with its private half
            self.simulated_qr_signer = Ed25519PrivateKey.generate()
            public_key = self.simulated_qr_signer.public_key()
        else:
            public_key = None
        if public_key is not None:
            verifier = TokenVerifier(
                public_key, self.now, max_lifetime_s=camera.qr_max_lifetime_s,
                nonces=NonceCache(camera.nonce_cache_size),
            )  # fmt: skip
        counter = AudienceCounter(min_area_px=camera.min_blob_area_px) if camera.audience else None
        return CameraPipeline(
            store_id=self.store_id,
            device_id=camera.device_id,
            outlet=self.outlet,
            clock=self.now,
            verifier=verifier,
            counter=counter,
            report_interval_s=camera.audience_interval_s,
        )

    def _decide_handler(self) -> DecideHandler:
        decide = self._decide
        if decide is not None:
            return decide

        async def no_offers(source: Source, request: dict[str, Any]) -> dict[str, Any]:
            return {"offers": []}

        return no_offers

    # -- simulator hooks -------------------------------------------------------------------
    def attach_pos_ports(self, basket: str | None, receipt: str | None = None, display: str | None = None) -> None:
        """Simulated mode: the pty paths the POS adapter should open."""
        if self._pos_ports is None:
            self._pos_ports = asyncio.get_running_loop().create_future()
        if not self._pos_ports.done():
            self._pos_ports.set_result((basket, receipt, display))

    # -- Component protocol ----------------------------------------------------------------
    def routers(self) -> Sequence[APIRouter]:
        return ()

    def pre_stages(self) -> Sequence[PreStage]:
        return (self._take_app_key,)

    def post_stages(self) -> Sequence[PostStage]:
        return ()

    def writers(self) -> Sequence[Writer]:
        return ()

    def listeners(self) -> Sequence[Listener]:
        return (self._bind_app_keys,)

    def decide_handler(self) -> DecideHandler | None:
        return None

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {}

    async def run(self) -> None:
        if self.ble is None and self.pos is None and self.camera is None:
            return
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.outlet.run(), name="devices-outlet")
            if self.ble is not None:
                tasks.create_task(self.ble.run_ticks(), name="ble-ticks")
                if self.ble_config.source == "bleak":
                    tasks.create_task(
                        run_scanner(
                            self.ble.on_advertisement,
                            adapter=self.ble_config.adapter,
                            mode=self.ble_config.scanning_mode,
                            watchdog_s=self.ble_config.watchdog_s,
                        ),
                        name="ble-scanner",
                    )
            if self.pos is not None:
                tasks.create_task(self._run_pos(tasks), name="pos")
            if self.camera is not None and self.camera_config.source == "capture":
                tasks.create_task(self._run_camera(), name="camera")

    async def _run_pos(self, tasks: asyncio.TaskGroup) -> None:
        assert self.pos is not None
        config = self.pos_config
        if config.source == "simulated":
            if self._pos_ports is None:
                self._pos_ports = asyncio.get_running_loop().create_future()
            basket, receipt, display = await self._pos_ports
        else:
            basket, receipt, display = config.basket_port, config.receipt_port, config.display_port
        roles: list[tuple[str | None, Callable[[SerialLink], Any], str]] = [
            (basket, self.pos.read_basket, "POS basket port"),
            (receipt, self.pos.read_receipts, "POS receipt tap"),
            (display, self.pos.drive_display, "pole display"),
        ]
        for path, use, what in roles:
            if path:
                tasks.create_task(
                    reconnecting(path, use, baudrate=config.baudrate, what=what, max_backoff_s=config.max_backoff_s),
                    name=what,
                )

    async def _run_camera(self) -> None:
        assert self.camera is not None
        status = TransitionLog(f"camera {self.camera_config.device_id}", log)
        attempt = 0
        from devices.camera.capture import VideoSource

        while True:
            try:
                async with VideoSource(self.camera_config.uri, fps=self.camera_config.fps,
                                       executor=self.camera.executor) as source:  # fmt: skip
                    async for frame in source.frames():
                        status.recovered()
                        attempt = 0
                        await self.camera.on_frame(frame)
            except DeviceUnavailable as exc:
                status.failed(str(exc))
            raise_if_cancelled()
            await asyncio.sleep(backoff_delay(attempt, base_s=1.0, cap_s=60.0))
            attempt += 1

    # -- app presence keys -----------------------------------------------------------------
    def _take_app_key(self, raw: dict[str, Any], source: Source) -> dict[str, Any]:
        properties = raw.get("properties")
        if raw.get("event") != "Consent Updated" or not isinstance(properties, dict):
            return raw
        if "appPresenceKey" not in properties:
            return raw
        properties = dict(properties)
        encoded = properties.pop("appPresenceKey")
        raw = {**raw, "properties": properties}
        message_id = raw.get("messageId")
        key = _decode_key(encoded)
        if key is None or not isinstance(message_id, str):
            self.keys_dropped += 1
            return raw
        self._pending_keys[message_id] = key
        while len(self._pending_keys) > _PENDING_KEYS_MAX:
            self._pending_keys.popitem(last=False)
            self.keys_dropped += 1
        return raw

    def _bind_app_keys(self, events: Sequence[Event]) -> None:
        if not self._pending_keys:
            return
        for event in events:
            key = self._pending_keys.pop(event.message_id, None)
            if key is None:
                continue
            personalization = event.body.get("properties", {}).get("categoryPreferences", {}).get("personalization")
            if event.user_id is None or personalization is False:
                self.keys_dropped += 1
                continue
            self.app_keys.register(event.user_id, key)

    def forget(self, token: str) -> int:
        """Erasure: drop the person's app key and presence state; returns rows removed.

        Registered as an erasure hook when the gateway gives hooks; may be called from any thread.
        """
        removed = 1 if self.app_keys.forget(token) else 0
        ble, loop = self.ble, self._loop
        if ble is not None:
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(ble.forget, token)
            else:
                ble.forget(token)
        return removed


def _decode_key(encoded: Any) -> bytes | None:
    if not isinstance(encoded, str) or len(encoded) > 64:
        return None
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == 32 else None


def _section(ctx: GatewayContext, name: str, cls: type) -> Any:
    try:
        return ctx.config.section(name)
    except KeyError:
        return cls()


def build(
    ctx: GatewayContext, *, decide: DecideHandler | None = None, erasure: ErasureHooks | None = None
) -> DevicesComponent:
    return DevicesComponent(ctx, decide=decide, erasure=erasure)
