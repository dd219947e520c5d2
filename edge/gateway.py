"""The composition root: builds every part of the gateway from the configuration and runs it.

Order of start: journal (migrated) → device registry → broker files (and the managed broker)
→ ingest writer → features (``features.enabled``: their stages, routes, listeners) → MQTT
link → HTTP server → READY to systemd. One ``asyncio.TaskGroup`` owns the long-lived work;
a feature whose ``run()`` fails is logged and restarted with backoff, never taking the gateway
down. Stop (SIGTERM/SIGINT or :meth:`Gateway.request_stop`) reverses the order: HTTP stops
accepting, MQTT publishes "offline" and disconnects, the writer commits what is queued, the
journal is checkpointed and closed, the managed broker is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import signal
import socket
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

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

__all__ = ["Gateway", "version"]

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


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        features: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.features = tuple(config.features.enabled) if features is None else features
        self.state_dir = Path(config.store.state_dir)
        self.components: dict[str, Component] = {}
        self.ready = asyncio.Event()
        self.http_url = ""
        self.broker_address: tuple[str, int] = ("", 0)  # the gateway's own listener
        self.device_broker_address: tuple[str, int] = ("", 0)  # plaintext device listener if any, else MQTT/TLS
        self.network: StoreNetwork | None = None
        self._stop: asyncio.Event | None = None
        self.context: GatewayContext | None = None
        self._app: Any = None

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
            self.device_broker_address = network.listener("plaintext") or network.listener("mqtts") or self.broker_address
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
                publisher=link, metrics=metrics.registry, clock=self.clock,
                topic_root=f"retail/v1/{cfg.store.id}/", components=self.components,
            )  # fmt: skip
            self.context = ctx
            self._build_features(ctx)
            for component in self.components.values():
                ingestor.attach(component)
                link.decide = link.decide or component.decide_handler()
            hub = StreamHub(registry, metrics.registry)
            ingestor.listeners.append(hub.listener)
            pages = StorePages(ctx, registry)
            ingestor.listeners.append(pages.listener)
            readiness: dict[str, Callable[[], bool]] = {
                "broker": link.connected.is_set,
                "journal": lambda: ingestor.healthy,
            }
            for component in self.components.values():
                readiness.update(component.readiness())
            ingestor.start()
            link.start(loop)
            routers = [hub.router(), pages.router(), *(r for c in self.components.values() for r in c.routers())]
            if network.pki is not None and cfg.tls.http and (mqtts := network.listener("mqtts")):
                routers.append(bridge_router(*mqtts, network.bridge_context()))
            app = create_app(
                store_id=cfg.store.id, registry=registry, ingestor=ingestor,
                metrics=metrics.registry, readiness=readiness, warnings={"tls_expiry": network.expiry_warning},
                routers=routers,
                max_body_bytes=cfg.http.max_body_bytes, version=version(),
            )  # fmt: skip
            self._app = app
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
                    workers = [tasks.create_task(self._supervise(c)) for c in self.components.values()]
                    workers.append(tasks.create_task(self._housekeeping(journal)))
                    workers.append(tasks.create_task(self._watchdog(ingestor)))
                    workers.append(tasks.create_task(network.renew_forever()))
                    while not server.started and not serving.done():
                        await asyncio.sleep(0.01)
                    self.ready.set()
                    notify(f"READY=1\nSTATUS=serving {self.http_url}, broker {self.broker_address[0]}:{self.broker_address[1]}")
                    log.info("gateway %s ready: http %s, broker %s:%d", cfg.store.id, self.http_url, *self.broker_address)
                    await self._stop.wait()
                    notify("STOPPING=1")
                    server.should_exit = True
                    for worker in workers:
                        worker.cancel()
            finally:
                sock.close()
                await asyncio.to_thread(link.stop)
                await asyncio.to_thread(ingestor.stop)
        finally:
            with contextlib.suppress(Exception):
                journal.checkpoint()
            journal.close()
            if broker is not None:
                await asyncio.to_thread(broker.stop)

    def _build_features(self, ctx: GatewayContext) -> None:
        for name in self.features:
            module = importlib.import_module(name)
            component = module.build(ctx)
            self.components[component.name] = component

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

    async def _housekeeping(self, journal: Any) -> None:
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
    identity = getattr(cfg, "identity", None)
    return IdentifierGuard(
        getattr(identity, "default_region", "US"), loyalty_patterns=cfg.guard.loyalty_patterns,
        app_id_patterns=cfg.guard.app_id_patterns, trait_allow=cfg.guard.trait_allow,
        identifiers=cfg.guard.identifiers,
        count=lambda kind, n: metrics.identifiers_masked.labels(kind).inc(n),
        dropped=metrics.traits_dropped.inc,
    )


def _parse_url(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].rstrip("/")
    host, _, port = rest.partition(":")
    return host, int(port or 1883)
