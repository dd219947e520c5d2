"""The decisioning component: identity, consent, erasure, profile, offers, decisions, uplift.

``build(ctx)`` wires the parts to the gateway's seams (see :mod:`edge.component`):

* pre-stage — :class:`~edge.decisioning.identity.IdentityStage` (tokenise, drop suppressed);
* post-stage — consent changes applied, then the consent snapshot stamped on every event;
* listeners — late-erasure guard, profile builder, attribution;
* ``decide_handler`` — the engine, for MQTT ``…/decide``;
* ``run()`` — offer-file reload, erasure refresh and confirmations, derived events' publisher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from edge import control
from edge.bus import PublishResult, Source
from edge.component import DecideHandler, GatewayContext, Listener, PostStage, PreStage, Writer
from edge.decisioning import retention
from edge.decisioning.admission import CommitAdmission
from edge.decisioning.attribution import Attribution
from edge.decisioning.caps import CapLedger
from edge.decisioning.consent import ConsentLedger
from edge.decisioning.engine import DecisionEngine, Recommending, local_time
from edge.decisioning.erasure import Eraser
from edge.decisioning.export import export_person
from edge.decisioning.identity import Identity, IdentityStage, load_key
from edge.decisioning.offers import OfferCatalog, OfferWatcher, load_offers
from edge.decisioning.profile import ProfileStore
from edge.decisioning.uplift import CampaignUplift, uplift_report
from edge.errors import InvalidEvent
from edge.events import Event
from edge.ids import uuid7
from edge.settings import JournalConfig

__all__ = ["DEMO_OFFERS", "DecisioningComponent", "build"]

log = logging.getLogger(__name__)

DEMO_OFFERS = Path(__file__).with_name("demo_offers.toml")
_DERIVED_BATCH = 256  # queued exposures/redemptions handed to the journal writer at once
_PRUNE_EVERY_S = 3600.0  # retention runs at start and then hourly


def build(ctx: GatewayContext, recommender: Callable[[], Recommending] | None = None) -> DecisioningComponent:
    """The component. ``recommender`` returns the model in force (default: the ``model``
    component's ``holder.current``, else a holder on the shipped default model)."""
    return DecisioningComponent(ctx, recommender or _default_recommender(ctx))


def _default_recommender(ctx: GatewayContext) -> Callable[[], Recommending]:
    model = ctx.components.get("model")
    holder = getattr(model, "holder", None)
    if holder is None:
        import models
        from models.runtime import ModelHolder

        holder = ModelHolder(models.DEFAULT_MODEL_DIR)
    return lambda: holder.current


class DecisioningComponent:
    name = "decisioning"

    def __init__(self, ctx: GatewayContext, recommender: Callable[[], Recommending]) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.settings = cfg.decisioning
        self.store_id = ctx.topic_root.rstrip("/").rsplit("/", 1)[-1]
        key_file = cfg.identity.key_file or ctx.state_dir / "identity.key"
        self.identity = Identity(load_key(Path(key_file)), cfg.identity.default_region)
        self.eraser = Eraser(ctx.journal, self.identity, ctx.clock)
        self.consent = ConsentLedger(ctx.journal, cfg.consent.default_notice_version)
        self.recommender = recommender
        self.profiles = ProfileStore(
            ctx.journal, self._category_of,
            lambda user_id: self.allows(user_id, "personalization"),
            max_items=self.settings.profile_items, cache_size=self.settings.profile_cache,
            visit_gap_ms=int(self.settings.visit_gap_minutes * 60_000),
            half_life_days=self.settings.history_half_life_days,
        )
        self.caps = CapLedger()
        self.caps.load(ctx.journal, self._today())
        self._metrics(ctx)
        self.offers_path = Path(cfg.offers.path) if cfg.offers.path else DEMO_OFFERS
        self.watcher = OfferWatcher(
            self.offers_path,
            lambda p: load_offers(p, default_holdout=self.settings.default_holdout),
            on_refused=lambda exc: self.offer_files_refused.inc(),
        )
        self.engine = DecisionEngine(
            identity=self.identity, consent=self.consent, profiles=self.profiles, caps=self.caps,
            offers=lambda: self.watcher.current, recommender=recommender, bus=ctx.bus,
            publish_later=None if self.settings.exposure_ack else self._publish_later,
            clock=ctx.clock, is_suppressed=self.eraser.is_suppressed, settings=self.settings,
            minimum_stock=cfg.offers.minimum_stock,
        )
        self.attribution = Attribution(
            self._category_of, self._emit_redeemed,
            int(self.settings.attribution_window_hours * 3_600_000),
        )
        self._identity_stage = IdentityStage(self.identity, self.eraser.is_suppressed)
        self.admission = CommitAdmission(
            self.eraser, self.consent,
            lambda user_id: self.profiles.drop(user_id, persist=False),  # the row: same commit
            on_stale=self.consent_stale.inc,
        )
        self._undo_admission = ctx.journal.admit_with(self.admission)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._derived: asyncio.Queue[tuple[Source, list[dict[str, Any]]]] | None = None
        self._wake: asyncio.Event | None = None

    def _metrics(self, ctx: GatewayContext) -> None:
        reg = ctx.metrics
        self.decisions = Counter("edge_decisions", "Decisions answered", ["channel", "arm"], registry=reg)
        self.decision_failures = Counter(
            "edge_decision_failures", "Decisions the gateway failed to answer (its fault, not a malformed"
            " request): the error rate a rollout judges a new model or catalog by", registry=reg,
        )
        self.decision_seconds = Histogram(
            "edge_decision_seconds", "Time to answer a decision",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0), registry=reg,
        )
        self.offer_files_refused = Counter(
            "edge_offer_files_refused", "Offer files refused on reload (the old catalog stayed)",
            registry=reg,
        )
        self.derived_dropped = Counter(
            "edge_derived_events_dropped", "Derived events (Offer Redeemed) dropped: queue full"
            " or gateway not running", registry=reg,
        )
        self.erasures = Counter("edge_erasures", "Customers erased", registry=reg)
        self.consent_stale = Counter(
            "edge_consent_stale", "Consent changes stored but not applied: a newer choice (by"
            " event time) was already in force", registry=reg,
        )

    # -- the seams -------------------------------------------------------------------------
    def routers(self) -> Sequence[Any]:
        from edge.decisioning.api import router

        return [router(self)]

    def pre_stages(self) -> Sequence[PreStage]:
        return [self._identity_stage]

    def post_stages(self) -> Sequence[PostStage]:
        return [self._post_stage, self.attribution.check]

    def writers(self) -> Sequence[Writer]:
        return [self.attribution.write]

    def listeners(self) -> Sequence[Listener]:
        return [self.profiles.listen, self.attribution.listen, self.eraser.listen]

    def decide_handler(self) -> DecideHandler:
        return self._decide_or_refuse

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {"offers": lambda: bool(self.watcher.current.offers), "model": self._model_ready}

    # -- the API the gateway, the sync engineer and the HTTP routes use -------------------
    async def decide(self, source: Source, body: dict[str, Any]) -> dict[str, Any]:
        try:
            with self.decision_seconds.time():
                response = await self.engine.decide(source, body)
        except InvalidEvent:
            raise
        except Exception:
            self.decision_failures.inc()
            raise
        self.decisions.labels(source.channel, response["arm"]).inc()
        return response

    async def _decide_or_refuse(self, source: Source, body: dict[str, Any]) -> dict[str, Any]:
        """The MQTT handler: a malformed request gets ``{"error", "detail"}`` as its reply."""
        try:
            return await self.decide(source, body)
        except InvalidEvent as exc:
            return {"error": exc.reason, "detail": exc.detail}

    def set_stock(self, levels: Mapping[str, int]) -> None:
        """Known stock levels (e.g. from the POS); an offer's SKU below ``offers.minimum_stock``
        is not applicable. SKUs never reported count as in stock."""
        self.engine.stock.update(levels)

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return not self.eraser.is_suppressed(user_id) and self.consent.allows(user_id, purpose)

    def is_suppressed(self, user_id: str | None) -> bool:
        return self.eraser.is_suppressed(user_id)

    def apply_consent(
        self, user_id: str, preferences: Mapping[str, Any], source: str,
        notice_version: str | None = None, *, message_id: str | None = None,
        timestamp: str | None = None,
    ) -> dict[str, bool]:
        """Record a consent change (the sync downlink; any thread but the event loop's): it is
        journaled as a ``Consent Updated`` event and applies by the same ordered rule as a
        device's — a redelivered ``message_id`` never re-applies, an older ``timestamp`` never
        overrides a newer choice. Returns the snapshot in force after the commit."""
        properties: dict[str, Any] = {"categoryPreferences": dict(preferences), "consentSource": source}
        if notice_version is not None:
            properties["noticeVersion"] = notice_version
        event: dict[str, Any] = {"type": "track", "event": "Consent Updated", "userId": user_id,
                                 "messageId": message_id or uuid7(), "properties": properties}
        if timestamp is not None:
            event["timestamp"] = timestamp
        result = self._commit_now(Source(self.store_id, "cdp-downlink", "gateway", "local"), [event])
        if result.rejected:
            raise InvalidEvent(result.rejected[0].reason, result.rejected[0].detail)
        return self.consent.snapshot(user_id)

    def _commit_now(self, source: Source, events: list[dict[str, Any]]) -> PublishResult:
        """Publish through the bus from a thread that is not the event loop's; wait for the commit."""
        loop = self._loop
        if loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.ctx.bus.publish(source, events), loop)
            return future.result(60)
        return asyncio.run(self.ctx.bus.publish(source, events))

    def erase(self, user_id: str, request_id: str | None = None) -> int:
        """Erase a person (token) everywhere; returns rows removed. Safe from any thread. When
        it returns the erasure and the suppression are in force, caches included."""
        removed, person = self.eraser.erase_person(user_id, request_id)
        self._forget_cached([user_id, *person.visits])
        self.erasures.inc()
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        return removed

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything the store holds about a person (token), as one JSON document (any thread
        but the event loop's)."""
        return export_person(self.ctx.journal, self.eraser, user_id)

    def prune_personal_data(self) -> dict[str, int]:
        """Retention: every personal table loses what is older than ``journal.retention_days``
        (any thread but the event loop's); returns rows removed per table."""
        cutoff = retention.cutoff_ms(self.ctx.clock(), self._retention_days())
        removed, _trimmed = self.profiles.prune_with(
            lambda: retention.prune(self.ctx.journal, cutoff, self._category_of))
        self.consent.expire(cutoff)
        if any(removed.values()):
            log.info("retention: pruned %s", ", ".join(f"{t} {n}" for t, n in removed.items() if n))
        return removed

    def add_erasure_hook(self, hook: Callable[[str], int]) -> Callable[[], None]:
        """Other components' erasure (presence state …): ``hook(token) -> rows removed`` runs on
        every erasure; returns the undo callable."""
        return self.eraser.add_hook(hook)

    def uplift(self) -> list[CampaignUplift]:
        return uplift_report(self.ctx.journal)

    @property
    def offers(self) -> OfferCatalog:
        return self.watcher.current

    # -- internals -------------------------------------------------------------------------
    def _post_stage(self, event: Event) -> None:
        if event.user_id is not None and self.eraser.is_suppressed(event.user_id):
            raise InvalidEvent("suppressed", "the customer was erased; event dropped")
        self.consent.stage(event)  # validates; the change applies inside the commit

    def _forget_cached(self, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:  # the rows are gone already: erasure deleted them
            self.consent.forget(user_id)
            self.profiles.drop(user_id, persist=False)
        self.caps.forget(user_ids)

    def _category_of(self, sku: str) -> str | None:
        try:
            return str(self.recommender().catalog.item(sku).category)
        except Exception:  # unknown SKU, or no model loaded yet
            return None

    def _model_ready(self) -> bool:
        try:
            return self.recommender() is not None
        except Exception:
            return False

    def _today(self) -> str:
        now_ms = int(self.ctx.clock() * 1000)
        return local_time(now_ms, self.settings.timezone_offset_minutes).date().isoformat()

    def _emit_redeemed(self, order: Event, redeemed: list[dict[str, Any]]) -> None:
        """Called in the journal writer thread: hand the events to run()'s publisher."""
        events = []
        for r in redeemed:
            event: dict[str, Any] = {
                "type": "track", "event": "Offer Redeemed",
                "messageId": f"redeemed-{r['decisionId']}-{r['offerId']}",
                "properties": dict(r, orderMessageId=order.message_id),
            }
            if order.user_id:
                event["userId"] = order.user_id
            if order.anonymous_id:
                event["anonymousId"] = order.anonymous_id
            events.append(event)
        src = order.source
        item = (Source(src.store_id, src.device_id, src.kind, "local"), events)
        loop, queue = self._loop, self._derived
        if loop is None or queue is None:
            self.derived_dropped.inc(len(events))
            return
        loop.call_soon_threadsafe(self._enqueue, queue, item)

    def _publish_later(self, source: Source, events: list[dict[str, Any]]) -> bool:
        """Hand events to run()'s publisher (on the loop); False when it is not running or full,
        and the caller then publishes them itself (backpressure, never a drop)."""
        if self._derived is None:
            return False
        try:
            self._derived.put_nowait((source, events))
        except asyncio.QueueFull:
            return False
        return True

    def _enqueue(self, queue: asyncio.Queue[Any], item: tuple[Source, list[dict[str, Any]]]) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self.derived_dropped.inc(len(item[1]))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._derived = asyncio.Queue(maxsize=self.settings.redeemed_queue)
        self._wake = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._publish_derived(self._derived))
                group.create_task(self._housekeeping(self._wake))
                group.create_task(self._serve_control())
        finally:
            self._loop = self._derived = self._wake = None

    async def _publish_derived(self, queue: asyncio.Queue[tuple[Source, list[dict[str, Any]]]]) -> None:
        while True:
            items = [await queue.get()]
            while len(items) < _DERIVED_BATCH and not queue.empty():
                items.append(queue.get_nowait())
            # published together, so the journal writer commits them as one group
            results = await asyncio.gather(
                *(self.ctx.bus.publish(source, events) for source, events in items),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, Exception):  # the journal is failing: rows are kept anyway
                    log.warning("could not journal derived events: %s", type(result).__name__)
            for _ in items:
                queue.task_done()

    async def _serve_control(self) -> None:
        """``edge forget`` / ``edge export`` ask this process (edge.control)."""
        path = control.socket_path(self.ctx.state_dir)
        try:
            handlers = {"forget": self._control_forget, "prune": self._control_prune,
                        "export": self._control_export}
            async with control.serve(path, handlers):
                await asyncio.Event().wait()
        except OSError as exc:  # e.g. a state dir path too long for a Unix socket
            log.warning("no control socket at %s (%s): edge forget will work on the file", path, exc)

    async def _control_forget(self, message: Mapping[str, Any]) -> dict[str, Any]:
        user_id = message.get("userId")
        request_id = message.get("requestId") or uuid7()
        if not isinstance(user_id, str) or not isinstance(request_id, str) or len(request_id) > 100:
            raise ValueError("forget needs userId (a ct_… token) and an optional requestId (≤ 100 chars)")
        loop = asyncio.get_running_loop()
        removed = await loop.run_in_executor(None, self.erase, user_id, request_id)
        return {"userId": user_id, "requestId": request_id, "removed": removed}

    async def _control_export(self, message: Mapping[str, Any]) -> dict[str, Any]:
        user_id = message.get("userId")
        if not isinstance(user_id, str):
            raise ValueError("export needs userId (a ct_… token)")
        return await asyncio.get_running_loop().run_in_executor(None, self.export, user_id)

    async def _control_prune(self, message: Mapping[str, Any]) -> dict[str, Any]:
        removed = await asyncio.get_running_loop().run_in_executor(None, self.prune_personal_data)
        return {"removed": removed, "retentionDays": self._retention_days()}

    def _retention_days(self) -> int:
        try:
            return int(self.ctx.config.journal.retention_days)
        except AttributeError:  # a configuration without the core sections (a component alone)
            return int(JournalConfig().retention_days)

    async def settled(self) -> None:
        """Return once every queued exposure and redemption has been journaled."""
        if self._derived is not None:
            await self._derived.join()

    async def _housekeeping(self, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        pruned_at = -_PRUNE_EVERY_S
        while True:
            if loop.time() - pruned_at >= _PRUNE_EVERY_S:
                await loop.run_in_executor(None, self.prune_personal_data)
                pruned_at = loop.time()
            await loop.run_in_executor(None, self.watcher.poll)
            if await loop.run_in_executor(None, self.eraser.refresh):
                self._forget_suppressed()
            await self._confirm_erasures()
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), self.ctx.config.offers.reload_seconds)
            except TimeoutError:
                pass

    def _forget_suppressed(self) -> None:
        """After an erasure by another process: drop cached state of any suppressed token."""
        cached = self.consent.known_users() | self.profiles.known_users()
        self._forget_cached([u for u in cached if self.eraser.is_suppressed(u)])

    async def _confirm_erasures(self) -> None:
        loop = asyncio.get_running_loop()
        pending = await loop.run_in_executor(None, self.eraser.pending_confirmations)
        for request_id, erased_ms, removed in pending:
            # the store in the id: every store confirms the same request, and messageId is the
            # fleet-wide de-duplication key (JetStream Nats-Msg-Id, the central primary key)
            event = {
                "type": "track", "event": "Customer Erased",
                "messageId": f"erased-{self.store_id}-{request_id}",
                "properties": {"requestId": request_id, "erasedMs": erased_ms, "removed": removed},
            }
            result = await self.ctx.bus.publish(Source(self.store_id, "gateway", "gateway", "local"), [event])
            if not result.rejected:
                await loop.run_in_executor(None, self.eraser.confirmed, request_id)
