"""A real journal, ingestor, component and FastAPI app in tmp_path, with a fake recommender."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

import edge.registry
from edge.bus import Source
from edge.component import GatewayContext
from edge.config import parse_config
from edge.decisioning import CONFIG_SECTIONS, MIGRATIONS, build
from edge.decisioning.component import DecisioningComponent
from edge.errors import AuthError
from edge.ingest import Ingestor
from edge.journal import Journal
from edge.metrics import IngestMetrics
from models.catalog import Catalog, CatalogItem

STORE = "store-001"
CATEGORIES = ("dairy", "bakery", "produce", "snacks", "beverages")
from support.privacy import RAW_APP, RAW_EMAIL, RAW_LOYALTY, RAW_NEEDLES, RAW_PHONE, scan_for  # noqa: E402,F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Scored:
    sku: str
    score: float


def make_catalog(n: int = 50) -> Catalog:
    return Catalog(
        [CatalogItem(f"SKU{i:05d}", f"item {i}", CATEGORIES[i % len(CATEGORIES)], 1.0 + i % 7, 0.3) for i in range(n)]
    )


@dataclass
class FakeRecommender:
    """Same API as models.runtime.Recommender; scores = popularity + history affinity."""

    catalog: Catalog = field(default_factory=make_catalog)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def recommend(
        self,
        basket: Sequence[str],
        history: Sequence[tuple[str, float]] = (),
        context: Any = None,
        k: int | None = None,
    ) -> list[Scored]:
        self.calls.append({"basket": list(basket), "history": list(history), "context": context})
        liked = {self.catalog.item(s).category: w for s, w in history if self.catalog.index(s) is not None}
        scores = []
        for i, item in enumerate(self.catalog.items):
            if item.sku in basket:
                continue
            scores.append(Scored(item.sku, -0.05 * i + 2.0 * liked.get(item.category, 0.0)))
        scores.sort(key=lambda s: (-s.score, s.sku))
        return scores[: k or 10]

    async def arecommend(self, *args: Any, **kwargs: Any) -> list[Scored]:
        return self.recommend(*args, **kwargs)


class Clock:
    def __init__(self, start: float = 1_767_600_000.0) -> None:  # 2026-01-05 08:00 UTC, a Monday
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


DEFAULT_OFFERS = """
version = "test-1"
[levers]
margin = 1.0
traffic = 0.5

[[offers]]
id = "milk-10"
title = "10 % off milk"
type = "percent_off"
sku = "SKU00000"
value = 2.0
discount = 10
caps = { per_person_day = 2, per_visit = 1 }
experiment = { id = "milk-q1", holdout = 0.2, unit = "person" }

[[offers]]
id = "bread-2for1"
title = "Two loaves for one"
type = "bogo"
sku = "SKU00001"
value = 1.5
caps = { per_person_day = 1 }
experiment = { id = "bread-q1", holdout = 0.1 }

[[offers]]
id = "snacks-cat"
title = "Snack week"
type = "amount_off"
category = "snacks"
value = 1.0
lever = "traffic"
zones = ["aisle-5"]
caps = { per_channel_day = 1 }
"""


@dataclass
class Gateway:
    journal: Journal
    ingestor: Ingestor
    component: DecisioningComponent
    clock: Clock
    recommender: FakeRecommender
    app: FastAPI
    tokens: dict[str, str]
    state_dir: Path
    offers_path: Path
    listened: set[str] = field(default_factory=set)

    async def publish(self, source: Source, events: Sequence[dict[str, Any]]) -> Any:
        """Publish and wait until the listeners (profile, attribution) have seen the events."""
        result = await self.ingestor.publish(source, events)
        for _ in range(2000):
            if all(m in self.listened or not self.journal.get(m) for m in result.message_ids):
                break
            await asyncio.sleep(0.001)
        return result

    def source(self, kind: str = "kiosk", device: str = "kiosk-1", transport: str = "mqtt") -> Source:
        return Source(STORE, device, kind, transport)

    async def drain(self) -> None:
        """Wait until queued exposures are journaled and the listeners have seen every event."""
        await asyncio.sleep(0.01)
        await asyncio.wait_for(self.component.settled(), 10)
        for _ in range(10000):
            if self.journal.message_ids() <= self.listened:
                return
            await asyncio.sleep(0.001)
        raise AssertionError("listeners did not catch up")

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://edge")

    def auth(self, role: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}"}

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.journal.connection() as conn:
            return conn.execute(sql, args).fetchall()


def make_gateway(tmp_path: Path, offers: str = DEFAULT_OFFERS, **settings: Any) -> Gateway:
    state = tmp_path / "state"
    tmp_path.mkdir(parents=True, exist_ok=True)
    offers_path = tmp_path / "offers.toml"
    offers_path.write_text(offers)
    raw: dict[str, Any] = {"offers": {"path": str(offers_path), "reload_seconds": 0.05}, "decisioning": settings}
    config = parse_config(raw, CONFIG_SECTIONS, env={})
    journal = Journal(state / "journal.db", synchronous="normal", migrations=(*MIGRATIONS, *edge.registry.MIGRATIONS))
    clock = Clock()
    registry = CollectorRegistry()
    ingestor = Ingestor(journal, IngestMetrics(registry), clock=clock)
    ctx = GatewayContext(
        config=config,
        state_dir=state,
        journal=journal,
        bus=ingestor,
        publisher=_NullPublisher(),
        metrics=registry,
        clock=clock,
        store_id=STORE,
    )
    recommender = FakeRecommender()
    component = build(ctx, recommender=lambda: recommender)
    ingestor.attach(component)
    listened: set[str] = set()
    ingestor.listeners.append(lambda events: listened.update(e.message_id for e in events))
    ingestor.start()
    app = FastAPI()
    devices = edge.registry.DeviceRegistry(journal)
    app.state.registry = devices
    tokens = {role: devices.add(role, f"{role}-1").http_token for role in ("kiosk", "display", "tablet", "pos", "ops")}

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    for router in component.routers():
        app.include_router(router)
    return Gateway(journal, ingestor, component, clock, recommender, app, tokens, state, offers_path, listened)


class _NullPublisher:
    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        pass


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path)
    yield gw
    gw.ingestor.stop()
    gw.journal.close()
    assert scan_for([tmp_path], RAW_NEEDLES) == [], "a raw identifier reached a file"


@contextlib.asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[None]:
    """Run the component's long-lived work for the duration of the block."""
    task = asyncio.get_running_loop().create_task(gw.component.run())
    await asyncio.sleep(0)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(gw: Gateway, rounds: int = 20) -> None:
    """Let derived events (Offer Redeemed) travel through the queue and the journal."""
    for _ in range(rounds):
        await asyncio.sleep(0.005)


def approx_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
