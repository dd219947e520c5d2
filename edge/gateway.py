"""The composition root: builds every part of the gateway from the configuration and runs it.

:func:`build_features` is the one place features meet: it names every feature, builds the
enabled ones (``features.enabled``) in dependency order, and passes each the core parts
(:class:`~edge.component.GatewayContext`) and the typed ports (:mod:`edge.types`) it needs from
the others. No feature looks another up.

Order of start: journal (migrated) → device registry → broker files (and the managed broker)
→ ingest writer → features (their stages, routes, listeners) → MQTT link → HTTP server →
READY to systemd. One ``asyncio.TaskGroup`` owns the long-lived work;
a feature whose ``run()`` fails is logged and restarted with backoff, never taking the gateway
down. Stop (SIGTERM/SIGINT or :meth:`Gateway.request_stop`) reverses the order: HTTP stops
accepting, MQTT publishes "offline" and disconnects, the writer commits what is queued, the
journal is checkpointed and closed, the managed broker is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import socket
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from edge.broker import ManagedBroker, gateway_password, signal_broker, sync_broker_files
from edge.component import Component, GatewayContext
from edge.config import Config
from edge.guard import IdentifierGuard
from edge.heap import freeze_long_lived
from edge.http import create_app
from edge.ingest import Ingestor
from edge.metrics import IngestMetrics
from edge.mqtt import MqttLink
from edge.notify import notify, watchdog_interval
from edge.pages import StorePages
from edge.registry import GATEWAY_USER, DeviceRegistry
from edge.schema import open_journal
from edge.sessions import prime_gateway_session
from edge.store_network import StoreNetwork
from edge.stream import StreamHub
from edge.wsbridge import bridge_router

if TYPE_CHECKING:
    from fastapi import FastAPI

    from devices.component import DevicesComponent
    from edge.decisioning.component import DecisioningComponent
    from edge.journal import Journal
    from edge.model import ModelComponent
    from edge.triggers.component import TriggersComponent
    from sync.component import SyncComponent

__all__ = ["Features", "Gateway", "build_features", "version"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


def version() -> str:
    try:
        return metadata.version("edge-gateway")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the gateway owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful stop, then an abort of every connection still open (a page's
        WebSocket whose browser never answered the close): nothing outlives the server.

        uvicorn's WebSocket protocol sends its own close even on a connection whose peer's
        close it has already answered (the TLS close still pending): websockets refuses with
        ``InvalidState``, and uvicorn's loop over the connections — and the gateway's run —
        ended on it. Each connection's shutdown is therefore guarded; one that fails is
        aborted below with the rest."""
        for connection in list(self.server_state.connections):
            connection.shutdown = functools.partial(_shutdown_quietly, connection)  # type: ignore[method-assign]
        await super().shutdown(sockets)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)  # uvicorn's protocols keep it there
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
        # an aborted (or closed) transport closes its socket in a callback of the next loop turns
        # (TLS: the SSL protocol's, then the socket transport's); run them now, or a loop closed
        # after the stop leaves the accepted sockets to the garbage collector
        for _ in range(4):
            await asyncio.sleep(0)


def _shutdown_quietly(connection: Any) -> None:
    """A uvicorn connection's own shutdown; one that fails is logged and aborted. (On Python
    3.11 a TLS transport closed twice — uvicorn closes it on the peer's close and again when
    the app returns — has dropped its link to the socket, so the abort cannot reach it: that
    socket then closes when the peer goes or asyncio's SSL shutdown timeout ends.)"""
    try:
        type(connection).shutdown(connection)
    except Exception as exc:  # a third party's protocol state
        log.info(
            "a connection could not be closed gracefully at shutdown (%s: %s); aborting it", type(exc).__name__, exc
        )
        transport = getattr(connection, "transport", None)
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()


@dataclass
class Features:
    """The gateway's features, each None unless enabled (``features.enabled``)."""

    model: ModelComponent | None = None  # "edge.model": the recommender in force, hot-swapped
    decisioning: DecisioningComponent | None = None  # "edge.decisioning": consent … decisions
    triggers: TriggersComponent | None = None  # "edge.triggers": signals → offers pushed to touch points
    devices: DevicesComponent | None = None  # "devices": BLE, POS, cameras
    sync: SyncComponent | None = None  # "sync": outbox to the CDP, downlink, health report

    def components(self) -> list[Component]:
        """The enabled ones, in build order (the order their stages and listeners run in)."""
        found: list[Component | None] = [self.model, self.decisioning, self.triggers, self.devices, self.sync]
        return [c for c in found if c is not None]


def build_features(ctx: GatewayContext, enabled: Collection[str]) -> Features:
    """Build the enabled features, each given what it needs from those built before it.

    Every feature gets ``ctx`` (config, journal, event bus, publisher, metrics, clock, store id)
    and registers its seams through the :class:`~edge.component.Component` it is. A feature
    added here is a few lines: build it from ``ctx`` and the ports it needs, keep it on
    :class:`Features`."""
    features = Features()
    if "edge.model" in enabled:
        from edge.model import ModelComponent

        features.model = ModelComponent(ctx)
    if "edge.decisioning" in enabled:
        from edge.decisioning.component import DecisioningComponent, default_recommender

        model = features.model
        features.decisioning = DecisioningComponent(
            ctx,
            # the recommender in force, read per decision: a model swap applies at the next one
            recommender=(lambda: model.holder.current) if model is not None else default_recommender(),
        )
    decisioning = features.decisioning
    if "edge.triggers" in enabled:
        from edge.triggers.component import TriggersComponent, TriggerSources

        features.triggers = TriggersComponent(
            ctx,  # the committed-event feed is its listeners() seam; publishes through ctx.publisher
            TriggerSources(policy=decisioning.policy, profiles=decisioning.profiles,
                           category_of=decisioning.category_of, price_of=decisioning.price_of,
                           decide=decisioning.decide, erasure=decisioning.forgetting)
            if decisioning is not None else None,  # without decisioning: anonymous, fixed offers only
        )  # fmt: skip
    if "devices" in enabled:
        from devices.component import DevicesComponent

        features.devices = DevicesComponent(
            ctx,
            decide=decisioning.decide_handler() if decisioning is not None else None,  # the POS asks
            erasure=decisioning.forgetting if decisioning is not None else None,  # app keys, presence
        )
    if "sync" in enabled:
        from sync.component import NO_CONSENT, SyncComponent, downlink_handlers

        features.sync = SyncComponent(
            ctx,
            policy=decisioning.policy if decisioning is not None else NO_CONSENT,  # at send time
            downlink=downlink_handlers(decisioning.changes, decisioning.forgetting,
                                       decisioning.offers_path, features.model)
            if decisioning is not None else None,  # consent, erasure, offers and model updates
            model=features.model,  # health report: the model version
            # health report: the offer catalog in force (a refused file keeps the old one)
            offers_version=(lambda: decisioning.offers.version or None) if decisioning is not None else None,
        )  # fmt: skip
    return features


def _model_dir(features: Features) -> Callable[[], Path]:
    """The directory of the model in force (the shipped default without the model feature)."""
    model = features.model
    if model is not None:
        return model.directory
    from models import DEFAULT_MODEL_DIR

    return lambda: Path(DEFAULT_MODEL_DIR)


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        enabled: Collection[str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.enabled = tuple(config.features.enabled) if enabled is None else tuple(enabled)
        self.state_dir = Path(config.store.state_dir)
        self.features = Features()
        self.ready = asyncio.Event()
        self.http_url = ""
        self.broker_address: tuple[str, int] = ("", 0)  # the gateway's own listener
        self.device_broker_address: tuple[str, int] = ("", 0)  # plaintext device listener if any, else MQTT/TLS
        self.network: StoreNetwork | None = None
        self._stop: asyncio.Event | None = None
        self.context: GatewayContext | None = None
        self.app: FastAPI | None = None  # the HTTP app being served (its routes: the auth test)

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._install_signals(loop)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        journal = open_journal(cfg)
        journal.start_checkpointer()
        registry = DeviceRegistry(journal)
        password = gateway_password(self.state_dir)
        sync_broker_files(registry, cfg.store.id, self.state_dir)
        broker: ManagedBroker | None = None
        metrics = IngestMetrics()
        network = self.network = StoreNetwork(cfg, metrics.registry, self.clock)
        client_id = cfg.mqtt.client_id or f"edge-gateway-{cfg.store.id}"
        try:
            if cfg.mqtt.mode == "managed":
                listeners = await asyncio.to_thread(network.prepare, cfg.mqtt.managed_port)
                broker = ManagedBroker(self.state_dir, cfg.mqtt.managed_port, cfg.mqtt.mosquitto_binary,
                                       cfg.mqtt.max_queued_messages, listeners=listeners, broker=cfg.broker,
                                       pki=network.pki)  # fmt: skip
                await asyncio.to_thread(broker.start)
                self.broker_address = (broker.host, broker.port)
                await asyncio.to_thread(prime_gateway_session, broker.host, broker.port, password, client_id,
                                        cfg.store.id, cfg.mqtt.session_expiry_s)  # fmt: skip
                signal_broker(self.state_dir, signal.SIGUSR1)  # saved now: a crash cannot forget the session
            else:
                self.broker_address = _parse_url(cfg.mqtt.url)
                await asyncio.to_thread(lambda: network.prepare(self.broker_address[1], broker_running=True))
            self.device_broker_address = (
                network.listener("plaintext") or network.listener("mqtts") or self.broker_address
            )
            ingestor = Ingestor(journal, metrics, queue_max=cfg.ingest.queue_max,
                                max_batch=cfg.ingest.max_batch, linger_ms=cfg.ingest.linger_ms,
                                clock=self.clock, guard=_guard(cfg, metrics))  # fmt: skip
            link = MqttLink(
                host=self.broker_address[0], port=self.broker_address[1],
                client_id=client_id,
                username=GATEWAY_USER, password=password, store_id=cfg.store.id,
                ingestor=ingestor, registry=registry, session_expiry_s=cfg.mqtt.session_expiry_s,
                receive_maximum=cfg.mqtt.receive_maximum, keepalive_s=cfg.mqtt.keepalive_s,
                metrics=metrics.registry, version=version(),
            )  # fmt: skip
            ctx = GatewayContext(
                config=cfg, state_dir=self.state_dir, journal=journal, bus=ingestor,
                publisher=link, metrics=metrics.registry, clock=self.clock, store_id=cfg.store.id,
            )  # fmt: skip
            self.context = ctx
            self.features = build_features(ctx, self.enabled)
            components = self.features.components()
            for component in components:
                ingestor.attach(component)
                link.decide = link.decide or component.decide_handler()
            hub = StreamHub(registry, metrics.registry)
            ingestor.listeners.append(hub.listener)
            decisioning = self.features.decisioning
            pages = StorePages(  # the store pages (kiosk, display, tablet, ops, pairing): core, always served
                ctx, registry, model=self.features.model, model_dir=_model_dir(self.features),
                offers_version=(lambda: decisioning.offers.version) if decisioning is not None else None,
                privacy=decisioning.privacy_counts if decisioning is not None else None,
            )  # fmt: skip
            ingestor.listeners.append(pages.listener)
            readiness: dict[str, Callable[[], bool]] = {
                "broker": link.connected.is_set,
                "journal": lambda: ingestor.healthy,
            }
            for component in components:
                readiness.update(component.readiness())
            ingestor.start()
            link.start(loop)
            routers = [hub.router(), pages.router(), *(r for c in components for r in c.routers())]
            if network.pki is not None and cfg.tls.http and (mqtts := network.listener("mqtts")):
                routers.append(bridge_router(*mqtts, network.bridge_context()))
            app = create_app(
                store_id=cfg.store.id, registry=registry, ingestor=ingestor,
                metrics=metrics.registry, readiness=readiness, warnings={"tls_expiry": network.expiry_warning},
                routers=routers,
                max_body_bytes=cfg.http.max_body_bytes, version=version(),
            )  # fmt: skip
            self.app = app
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cfg.http.host, cfg.http.port))
            port = sock.getsockname()[1]
            self.http_url = f"{'https' if network.uvicorn_ssl() else 'http'}://{cfg.http.host}:{port}"
            network.record(port)
            # a stop waits at most 5 s for open connections: a browser page's WebSocket may never close its side
            server_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=5, **network.uvicorn_ssl())  # fmt: skip
            server_config.load()
            network.http_ssl = server_config.ssl  # renewal loads the new chain into this very context
            server = _Server(server_config)
            freeze_long_lived()  # the model, catalog, offers and tables are loaded: see edge.heap
            try:
                async with asyncio.TaskGroup() as tasks:
                    serving = tasks.create_task(server.serve(sockets=[sock]))
                    workers = [tasks.create_task(self._supervise(c)) for c in components]
                    workers.append(tasks.create_task(self._housekeeping(journal)))
                    workers.append(tasks.create_task(self._watchdog(ingestor)))
                    workers.append(tasks.create_task(network.renew_forever()))
                    while not server.started and not serving.done():
                        await asyncio.sleep(0.01)
                    self.ready.set()
                    notify(
                        f"READY=1\nSTATUS=serving {self.http_url}, broker {self.broker_address[0]}:{self.broker_address[1]}"
                    )
                    log.info(
                        "gateway %s ready: http %s, broker %s:%d", cfg.store.id, self.http_url, *self.broker_address
                    )
                    await self._stop.wait()
                    notify("STOPPING=1")
                    server.should_exit = True
                    for worker in workers:
                        worker.cancel()
            finally:
                sock.close()
                await link.stop()
                await asyncio.to_thread(ingestor.stop)
        finally:
            with contextlib.suppress(Exception):
                journal.checkpoint()
            journal.close()
            if broker is not None:
                await asyncio.to_thread(broker.stop)

    async def _supervise(self, component: Component) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await component.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = 0 if time.monotonic() - started > 60 else failures + 1
                delay = min(60.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                log.exception("component %s failed; restarting in %.1f s", component.name, delay)
                await asyncio.sleep(delay)

    async def _housekeeping(self, journal: Journal) -> None:
        while True:
            cutoff = int(self.clock() * 1000) - self.config.journal.retention_days * DAY_MS
            removed = await asyncio.to_thread(journal.prune, cutoff)
            if removed:
                log.info("retention: pruned %d events older than %d days", removed, self.config.journal.retention_days)
            await asyncio.sleep(3600)

    async def _watchdog(self, ingestor: Ingestor) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            if ingestor.healthy:
                notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)


def _guard(cfg: Config, metrics: IngestMetrics) -> IdentifierGuard:
    try:
        region = cfg.identity.default_region
    except AttributeError:  # a schema without the decisioning feature's sections
        region = "US"
    return IdentifierGuard(
        region,
        loyalty_patterns=cfg.guard.loyalty_patterns,
        app_id_patterns=cfg.guard.app_id_patterns,
        trait_allow=cfg.guard.trait_allow,
        identifiers=cfg.guard.identifiers,
        count=lambda kind, n: metrics.identifiers_masked.labels(kind).inc(n),
        dropped=metrics.traits_dropped.inc,
    )


def _parse_url(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].rstrip("/")
    host, _, port = rest.partition(":")
    return host, int(port or 1883)
