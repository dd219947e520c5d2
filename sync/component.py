"""The sync feature as a gateway component: outbox loops, quota, downlink, status route."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.component import ComponentBase, GatewayContext
from edge.types import ConsentChanges, ConsentPolicy, Erasure, ModelSlot
from sync.config import DownlinkConfig, HttpSinkConfig, NatsSinkConfig, SyncConfig
from sync.downlink import Downlink, DownlinkHandlers, OffersFile
from sync.errors import DownlinkRefused
from sync.health import HealthReporter, StoreHealth
from sync.metrics import SyncMetrics
from sync.outbox import Outbox
from sync.quota import enforce_quota
from sync.sink import Sink
from sync.status import sync_status
from sync.store_health import store_health

if TYPE_CHECKING:
    import httpx
    from fastapi import APIRouter

__all__ = ["NO_CONSENT", "SyncComponent", "build", "downlink_handlers"]

log = logging.getLogger(__name__)


class _NoConsent:
    """A gateway without the decisioning feature knows no one's consent: no event about a
    person leaves the store, consent records included."""

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return False

    def is_suppressed(self, user_id: str | None) -> bool:
        return True


NO_CONSENT: ConsentPolicy = _NoConsent()


class SyncComponent(ComponentBase):
    name = "sync"

    def __init__(
        self,
        ctx: GatewayContext,
        *,
        policy: ConsentPolicy = NO_CONSENT,
        downlink: DownlinkHandlers | None = None,
        model: ModelSlot | None = None,
        offers_version: Callable[[], str | None] | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``policy`` is asked, at send time, whether an event about a person may leave;
        ``downlink`` applies what the centre sends (None: no downlink); ``model`` and
        ``offers_version`` (the offer catalog in force, not the file on disk: a refused file
        keeps the old catalog, and a rollout must see that) are what the health report names
        (None: not running here)."""
        self.ctx = ctx
        self.store_id = ctx.store_id
        self.config: SyncConfig = ctx.config.section("sync")
        self.http: HttpSinkConfig = ctx.config.section("sync_http")
        self.nats: NatsSinkConfig = ctx.config.section("sync_nats")
        self.downlink_config: DownlinkConfig = ctx.config.section("downlink")
        self.metrics = SyncMetrics(ctx.metrics)
        self.outbox = Outbox(ctx.journal, self.config, lambda user_id: policy.allows(user_id, "cdp_sync"),
                             self.metrics, is_erased=policy.is_suppressed)  # fmt: skip
        self._model = model
        self._offers_version = offers_version
        self._http_transport = http_transport
        self.downlink = (
            Downlink(
                ctx.journal, self.downlink_config, downlink, self.store_id, ctx.state_dir, self.metrics
            )  # fmt: skip
            if downlink is not None and self.downlink_config.enabled
            else None
        )
        # with a downlink the store reports its health to the centre (rollouts, fleet status)
        self.health = (
            HealthReporter(
                self.store_id,
                self.downlink_config.servers,
                self.downlink_config.credentials,
                self._health,
                self.downlink_config.status_interval_s,
            )  # fmt: skip
            if self.downlink is not None
            else None
        )
        if self.downlink is not None and self.health is not None:
            self.downlink.after_message = self.health.poke

    def _health(self) -> StoreHealth:
        return store_health(self.store_id, self.ctx.journal, self.ctx.metrics, list(self.sinks()),
                            model=self._model, offers=self._offers_version() if self._offers_version else None)  # fmt: skip

    def sinks(self) -> dict[str, Callable[[], AbstractAsyncContextManager[Sink]]]:
        """Enabled sinks by name, each a factory of a fresh connection."""
        out: dict[str, Callable[[], AbstractAsyncContextManager[Sink]]] = {}
        if self.http.enabled:
            from sync.http_sink import HttpSink  # httpx: loaded by a store with an HTTP sink only

            out["http"] = lambda: HttpSink(self.http, transport=self._http_transport)
        if self.nats.enabled:
            from sync.nats_sink import JetStreamSink  # the NATS client: loaded by NATS stores only

            out["nats"] = lambda: JetStreamSink(self.nats, self.store_id)
        return out

    def status(self) -> dict[str, Any]:
        return sync_status(self.ctx.journal, list(self.sinks()), self.config.quota_bytes)

    def enforce_quota(self) -> None:
        sinks = list(self.sinks())
        if sinks:
            enforce_quota(
                self.ctx.journal, sinks, self.config.quota_bytes,
                low_water=self.config.quota_low_water, store_id=self.store_id,
                metrics=self.metrics, clock=self.ctx.clock,
            )  # fmt: skip

    # -- Component protocol -----------------------------------------------------------------
    def routers(self) -> Sequence[APIRouter]:
        from fastapi import APIRouter, Depends

        from edge.auth import require

        router = APIRouter()

        @router.get("/v1/sync/status", dependencies=[Depends(require("ops"))], tags=["sync"])
        async def sync_status_route() -> dict[str, Any]:
            """Outbox backlog per sink, oldest unsent event, last success, drops, downlink log."""
            return await asyncio.to_thread(self.status)

        return [router]

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {}  # offline is a normal state for a store: sync never makes the gateway unready

    async def run(self) -> None:
        sinks = self.sinks()
        async with asyncio.TaskGroup() as tasks:
            for name, factory in sinks.items():
                retry = self.http.auth_retry_s if name == "http" else 300.0
                tasks.create_task(self.outbox.run_sink(name, factory, auth_retry_s=retry))
            if sinks and self.config.quota_bytes > 0:
                tasks.create_task(self._quota_loop())
            if self.downlink is not None:
                tasks.create_task(self.downlink.run())
            if self.health is not None:
                tasks.create_task(self.health.run())

    async def _quota_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.enforce_quota)
            except Exception:
                log.exception("outbox quota check failed; retrying at the next interval")
            await asyncio.sleep(self.config.quota_check_s)


def build(
    ctx: GatewayContext,
    *,
    policy: ConsentPolicy = NO_CONSENT,
    downlink: DownlinkHandlers | None = None,
    model: ModelSlot | None = None,
    offers_version: Callable[[], str | None] | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> SyncComponent:
    """The sync component (see :class:`SyncComponent`)."""
    return SyncComponent(ctx, policy=policy, downlink=downlink, model=model, offers_version=offers_version,
                         http_transport=http_transport)  # fmt: skip


def _no_model_runtime(directory: Path) -> None:
    raise DownlinkRefused("no_model_runtime", "this gateway has no model runtime to swap into")


def downlink_handlers(
    changes: ConsentChanges, erasure: Erasure, offers_path: Path, model: ModelSlot | None
) -> DownlinkHandlers:
    """What the downlink applies, from the decisioning feature's consent changes, erasure and
    offers file, and the model slot (None: model updates are refused). A model is accepted only
    for the product catalog (sha256 of catalog.csv) the store's model in force was built for."""
    offers = OffersFile(offers_path)
    return DownlinkHandlers(
        apply_consent=lambda user_id, prefs, src: changes.apply_consent(user_id, prefs, src),
        record_consent=lambda change: changes.apply_consent(
            change.user_id,
            change.preferences,
            change.source,
            message_id=f"cdp-consent-{change.id}",
            timestamp=change.timestamp,
        ),
        erase=lambda user_id, request_id: erasure.erase(user_id, request_id),
        install_offers=offers.install,
        swap_model=model.swap if model is not None else _no_model_runtime,
        catalog_version=model.catalog_version if model is not None else (lambda: None),
    )
