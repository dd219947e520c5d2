"""The decisioning feature's facade: its services wired to the gateway's seams.

The services, one module each: identity (:mod:`~edge.decisioning.identity`), consent
(:mod:`~edge.decisioning.consent`, :mod:`~edge.decisioning.changes`, and the one check in
:mod:`~edge.decisioning.policy`), erasure (:mod:`~edge.decisioning.erasure`,
:mod:`~edge.decisioning.forgetting`), profile (:mod:`~edge.decisioning.profile`), decisions
(:mod:`~edge.decisioning.decisions`), attribution (:mod:`~edge.decisioning.attribution`,
:mod:`~edge.decisioning.derived`), and their periodic work
(:mod:`~edge.decisioning.housekeeping`). :class:`DecisioningComponent` builds them and hands
the gateway its seams (see :mod:`edge.component`):

* pre-stage — :class:`~edge.decisioning.identity.IdentityStage` (tokenise, drop suppressed);
* post-stage — suppressed persons refused, consent changes validated; attribution checked;
* the journal's admission — suppression, consent changes and the snapshot, inside every commit;
* listeners — profile builder, attribution, late-erasure guard;
* ``decide_handler`` — the engine, for MQTT ``…/decide``;
* ``run()`` — derived events' publisher, housekeeping, the control socket (``edge forget``).

Other features get its services as typed ports (:mod:`edge.types`): :attr:`policy`
(``ConsentPolicy``), :attr:`forgetting` (``Erasure``), :attr:`changes` (``ConsentChanges``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from edge import control
from edge.bus import Source
from edge.component import GatewayContext
from edge.decisioning.admission import CommitAdmission
from edge.decisioning.attribution import Attribution
from edge.decisioning.changes import ConsentRecorder
from edge.decisioning.consent import ConsentLedger
from edge.decisioning.decisions import DEMO_OFFERS, Decisions, categories
from edge.decisioning.derived import DerivedEvents
from edge.decisioning.engine import DecisionEngine, Recommending
from edge.decisioning.erasure import Eraser
from edge.decisioning.export import export_person
from edge.decisioning.forgetting import Forgetting
from edge.decisioning.housekeeping import Housekeeping
from edge.decisioning.identity import Identity, IdentityStage, load_key
from edge.decisioning.offers import OfferCatalog
from edge.decisioning.policy import Policy, key_file
from edge.decisioning.profile import ProfileStore
from edge.decisioning.uplift import CampaignUplift, uplift_report
from edge.errors import InvalidEvent
from edge.events import Event
from edge.ids import uuid7
from edge.settings import JournalConfig
from edge.types import DecideHandler, ErasureHook, Listener, PostStage, PreStage, PrivacyCounts, Undo, Writer

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["DEMO_OFFERS", "DecisioningComponent", "build", "default_recommender"]

log = logging.getLogger(__name__)


def default_recommender() -> Callable[[], Recommending]:
    """The shipped default model, for a gateway run without the ``edge.model`` feature."""
    import models
    from models.runtime import ModelHolder

    holder = ModelHolder(models.DEFAULT_MODEL_DIR)
    return lambda: holder.current


def build(ctx: GatewayContext, recommender: Callable[[], Recommending] | None = None) -> DecisioningComponent:
    """The component. ``recommender`` returns the model in force (default: the shipped model)."""
    return DecisioningComponent(ctx, recommender or default_recommender())


class DecisioningComponent:
    name = "decisioning"

    def __init__(self, ctx: GatewayContext, recommender: Callable[[], Recommending]) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.settings = settings = cfg.decisioning
        self.store_id = ctx.store_id
        self.recommender = recommender
        self.category_of = category_of = categories(recommender)
        self.identity = Identity(load_key(key_file(cfg, ctx.state_dir)), cfg.identity.default_region)
        self.eraser = Eraser(ctx.journal, self.identity, ctx.clock)
        self.consent = ConsentLedger(ctx.journal, cfg.consent.default_notice_version)
        self.policy = Policy(self.consent, self.eraser)
        self.changes = ConsentRecorder(ctx.bus, self.consent, ctx.store_id)
        self.profiles = ProfileStore(
            ctx.journal, category_of, lambda user_id: self.policy.allows(user_id, "personalization"),
            max_items=settings.profile_items, cache_size=settings.profile_cache,
            visit_gap_ms=int(settings.visit_gap_minutes * 60_000),
            half_life_days=settings.history_half_life_days,
        )  # fmt: skip
        self.derived = DerivedEvents(ctx.bus, ctx.metrics, settings.redeemed_queue)
        self.decisions = Decisions(
            settings=settings, offers_path=Path(cfg.offers.path) if cfg.offers.path else None,
            minimum_stock=cfg.offers.minimum_stock, journal=ctx.journal, registry=ctx.metrics,
            bus=ctx.bus, clock=ctx.clock, identity=self.identity, consent=self.consent,
            profiles=self.profiles, recommender=recommender, is_suppressed=self.eraser.is_suppressed,
            publish_later=self.derived.publish_later,
        )  # fmt: skip
        self.attribution = Attribution(
            category_of, self._emit_redeemed, int(settings.attribution_window_hours * 3_600_000)
        )
        self.forgetting = Forgetting(
            self.eraser, forget_cached=self._forget_cached, registry=ctx.metrics,
            cached_users=lambda: self.consent.known_users() | self.profiles.known_users(),
            on_erased=lambda: self.housekeeping.wake(),
        )  # fmt: skip
        self.housekeeping = Housekeeping(
            journal=ctx.journal, clock=ctx.clock, retention_days=_retention_days(ctx),
            reload_seconds=cfg.offers.reload_seconds, consent=self.consent, profiles=self.profiles,
            watcher=self.decisions.watcher, forgetting=self.forgetting, category_of=category_of,
            bus=ctx.bus, store_id=ctx.store_id,
        )  # fmt: skip
        self._identity_stage = IdentityStage(self.identity, self.eraser.is_suppressed)
        self.consent_stale = Counter(
            "edge_consent_stale", "Consent changes stored but not applied: a newer choice (by"
            " event time) was already in force", registry=ctx.metrics,
        )  # fmt: skip
        self.admission = CommitAdmission(
            self.eraser,
            self.consent,
            lambda user_id: self.profiles.drop(user_id, persist=False),  # the row: same commit
            on_stale=self.consent_stale.inc,
        )
        self._undo_admission = ctx.journal.admit_with(self.admission)

    # -- the seams -------------------------------------------------------------------------
    def routers(self) -> Sequence[APIRouter]:
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
        return self.decisions.decide_or_refuse

    def readiness(self) -> Mapping[str, Callable[[], bool]]:
        return {"offers": lambda: bool(self.decisions.offers.offers), "model": self.decisions.model_ready}

    # -- what the routes and the control socket call --------------------------------------
    @property
    def engine(self) -> DecisionEngine:
        return self.decisions.engine

    @property
    def offers(self) -> OfferCatalog:
        return self.decisions.offers

    @property
    def offers_path(self) -> Path:
        return self.decisions.offers_path

    async def decide(self, source: Source, body: dict[str, Any]) -> dict[str, Any]:
        return await self.decisions.decide(source, body)

    def set_stock(self, levels: Mapping[str, int]) -> None:
        self.decisions.set_stock(levels)

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return self.policy.allows(user_id, purpose)

    def is_suppressed(self, user_id: str | None) -> bool:
        return self.policy.is_suppressed(user_id)

    def apply_consent(
        self, user_id: str, preferences: Mapping[str, Any], source: str,
        notice_version: str | None = None, *, message_id: str | None = None,
        timestamp: str | None = None,
    ) -> dict[str, bool]:  # fmt: skip
        return self.changes.apply_consent(user_id, preferences, source, notice_version,
                                          message_id=message_id, timestamp=timestamp)  # fmt: skip

    def erase(self, user_id: str, request_id: str | None = None) -> int:
        return self.forgetting.erase(user_id, request_id)

    def privacy_counts(self) -> PrivacyCounts:
        """Consent per purpose (granted / withdrawn) and erasures carried out: the ops dashboard."""
        conn = self.ctx.journal.reader()
        rows = conn.execute("SELECT purpose, SUM(granted), COUNT(*) FROM consent GROUP BY 1").fetchall()
        erasures = int(conn.execute("SELECT COUNT(*) FROM erasures").fetchone()[0])
        consent = {str(p): {"granted": int(g or 0), "withdrawn": int(n) - int(g or 0)} for p, g, n in rows}
        return PrivacyCounts(consent, erasures)

    def price_of(self, sku: str) -> float:
        """The catalog price of ``sku`` in the model in force (0.0 when the model has none)."""
        try:
            return float(self.recommender().catalog.item(sku).price)
        except (KeyError, LookupError, AttributeError, TypeError, ValueError):
            return 0.0

    def add_erasure_hook(self, hook: ErasureHook) -> Undo:
        return self.forgetting.add_erasure_hook(hook)

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything the store holds about a person (token), as one JSON document (any thread
        but the event loop's)."""
        return export_person(self.ctx.journal, self.eraser, user_id)

    def prune_personal_data(self) -> dict[str, int]:
        return self.housekeeping.prune_personal_data()

    def uplift(self) -> list[CampaignUplift]:
        return uplift_report(self.ctx.journal)

    async def settled(self) -> None:
        """Return once every queued exposure and redemption has been journaled."""
        await self.derived.settled()

    # -- internals -------------------------------------------------------------------------
    def _post_stage(self, event: Event) -> None:
        if event.user_id is not None and self.eraser.is_suppressed(event.user_id):
            raise InvalidEvent("suppressed", "the customer was erased; event dropped")
        self.consent.stage(event)  # validates; the change applies inside the commit

    def _forget_cached(self, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:
            self.consent.forget(user_id)
            self.profiles.drop(user_id, persist=False)
        self.decisions.caps.forget(user_ids)

    def _emit_redeemed(self, order: Event, redeemed: list[dict[str, Any]]) -> None:
        """Called in the journal writer thread: ``Offer Redeemed`` per redeemed offer."""
        events = []
        for r in redeemed:
            event: dict[str, Any] = {
                "type": "track", "event": "Offer Redeemed",
                "messageId": f"redeemed-{r['decisionId']}-{r['offerId']}",
                "properties": dict(r, orderMessageId=order.message_id),
            }  # fmt: skip
            if order.user_id:
                event["userId"] = order.user_id
            if order.anonymous_id:
                event["anonymousId"] = order.anonymous_id
            events.append(event)
        src = order.source
        self.derived.from_thread(Source(src.store_id, src.device_id, src.kind, "local"), events)

    async def run(self) -> None:
        self.changes.bind(asyncio.get_running_loop())
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.derived.run())
                group.create_task(self.housekeeping.run())
                group.create_task(self._serve_control())
        finally:
            self.changes.bind(None)

    async def _serve_control(self) -> None:
        """``edge forget`` / ``edge export`` / ``edge retention prune`` ask this process."""
        path = control.socket_path(self.ctx.state_dir)
        try:
            handlers = {"forget": self._control_forget, "prune": self._control_prune,
                        "export": self._control_export}  # fmt: skip
            async with control.serve(path, handlers):
                await asyncio.Event().wait()
        except OSError as exc:  # e.g. a state dir path too long for a Unix socket
            log.warning("no control socket at %s (%s): edge forget will work on the file", path, exc)

    async def _control_forget(self, message: Mapping[str, Any]) -> dict[str, Any]:
        user_id = message.get("userId")
        request_id = message.get("requestId") or uuid7()
        if not isinstance(user_id, str) or not isinstance(request_id, str) or len(request_id) > 100:
            raise ValueError("forget needs userId (a ct_… token) and an optional requestId (≤ 100 chars)")
        removed = await asyncio.get_running_loop().run_in_executor(None, self.erase, user_id, request_id)
        return {"userId": user_id, "requestId": request_id, "removed": removed}

    async def _control_export(self, message: Mapping[str, Any]) -> dict[str, Any]:
        user_id = message.get("userId")
        if not isinstance(user_id, str):
            raise ValueError("export needs userId (a ct_… token)")
        return await asyncio.get_running_loop().run_in_executor(None, self.export, user_id)

    async def _control_prune(self, message: Mapping[str, Any]) -> dict[str, Any]:
        removed = await asyncio.get_running_loop().run_in_executor(None, self.prune_personal_data)
        return {"removed": removed, "retentionDays": self.housekeeping.retention_days}


def _retention_days(ctx: GatewayContext) -> int:
    try:
        return int(ctx.config.journal.retention_days)
    except AttributeError:  # a configuration without the core sections (the feature alone)
        return int(JournalConfig().retention_days)
