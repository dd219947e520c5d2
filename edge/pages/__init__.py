"""The store pages, served by the gateway from the box: kiosk, display, associate tablet, ops
dashboard and device pairing (``/pages/…``).

Every asset is a file under ``edge/pages/static/`` (no CDN, no build step); each page answers
with a Content-Security-Policy that lets it load and connect to nothing but the gateway. A
page acts with the bearer token of the device it runs on (from pairing, kept in the browser's
``localStorage``), so it sees exactly what that device's role may see through the API:

| page | role | data |
|---|---|---|
| ``/pages/kiosk`` | kiosk | ``POST /v1/consent``, ``POST /v1/decisions``, ``POST /v1/events``, ``GET /v1/pages/products`` |
| ``/pages/display`` | display | MQTT over secure WebSockets (``/mqtt``, its retained ``…/offers``), ``POST /v1/events`` |
| ``/pages/tablet`` | tablet | ``/v1/stream`` (consented presence), profile, decisions, tablet ``…/offers`` over ``/mqtt`` |
| ``/pages/ops`` | ops | ``GET /v1/ops/overview``, ``/v1/sync/status``, ``/v1/reports/uplift``, ``/v1/reports/triggers``, pairing approval |
| ``/pages/pair`` | none yet | ``POST /v1/pairing``, ``GET /v1/pairing/{code}`` |
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from edge import pairing
from edge.auth import Principal, require
from edge.component import GatewayContext
from edge.pages.overview import DeviceWatch, Overview
from edge.registry import DeviceRegistry
from edge.types import ModelSlot, PrivacyCounts

__all__ = ["CSP", "PAGES", "DeviceWatch", "Overview", "StorePages"]

PAGES = ("kiosk", "display", "tablet", "ops", "pair")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}  # fmt: skip
#: nothing but the gateway itself: no CDN, no third-party host, no inline script
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip
_MAX_PRODUCTS = 200


def _static() -> dict[str, bytes]:
    root = resources.files(__package__) / "static"
    return {entry.name: entry.read_bytes() for entry in root.iterdir() if entry.is_file()}


class StorePages:
    """Built by the composition root; ``listener`` goes on the ingest listeners, ``router()`` on the app."""

    def __init__(
        self,
        ctx: GatewayContext,
        registry: DeviceRegistry,
        *,
        model_dir: Callable[[], Path],
        model: ModelSlot | None = None,
        offers_version: Callable[[], str | None] | None = None,
        privacy: Callable[[], PrivacyCounts] | None = None,
    ) -> None:
        self._ctx = ctx
        self._registry = registry
        self._model = model  # the recommender in force: its versions
        self._model_dir = model_dir  # where the products the kiosk lists are (the model's catalog.csv)
        self._offers_version = offers_version  # the offer catalog in force (decisioning)
        self.watch = DeviceWatch()
        self.listener = self.watch.listener
        self.overview = Overview(registry=registry, journal=ctx.journal, metrics=ctx.metrics, watch=self.watch,
                                 versions=self._versions, privacy=privacy, clock=ctx.clock)  # fmt: skip
        self.pairing = pairing.Pairing(ctx.config, registry, ctx.journal, clock=ctx.clock)
        self._files = _static()

    def _versions(self) -> Mapping[str, str | None]:
        model, offers = self._model, self._offers_version
        return {"model": model.version() if model else None,
                "productCatalog": (model.catalog_version()[:12] or None) if model else None,
                "offerCatalog": (offers() or None) if offers else None}  # fmt: skip

    def _products(self) -> list[dict[str, Any]]:
        directory = self._model_dir()
        with open(Path(directory) / "catalog.csv", newline="") as fh:
            rows = []
            for row in csv.DictReader(fh):
                rows.append({"sku": row["sku"], "name": row["name"], "category": row["category"],
                             "price": float(row["price"])})  # fmt: skip
                if len(rows) >= _MAX_PRODUCTS:
                    break
        return rows

    def router(self) -> APIRouter:
        api = APIRouter()
        files = self._files

        @api.get("/pages", include_in_schema=False)
        @api.get("/pages/", include_in_schema=False)
        async def index() -> Response:
            return self._page("index")

        @api.get("/pages/{page}", include_in_schema=False)
        async def page(page: str) -> Response:
            if page not in PAGES:
                return JSONResponse({"error": "not_found", "detail": f"no page {page!r}; pages: {', '.join(PAGES)}"},
                                    404)  # fmt: skip
            return self._page(page)

        @api.get("/pages/static/{name}", include_in_schema=False)
        async def static(name: str) -> Response:
            body = files.get(name)
            if body is None:
                return JSONResponse({"error": "not_found", "detail": f"no asset {name!r}"}, 404)
            return Response(body, media_type=_TYPES.get(Path(name).suffix, "application/octet-stream"),
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})  # fmt: skip

        @api.get("/v1/ops/overview", tags=["ops"])
        async def ops_overview(_who: Principal = Depends(require("ops"))) -> dict[str, Any]:
            """Devices (online, last seen, status, beacon battery), ingest/decision rates and p99,
            dead letters and refusals by reason, drops, consent and erasure counts, model and
            catalog versions, server certificate expiry — what the ops dashboard draws."""
            return await asyncio.to_thread(self.overview.build)

        @api.get("/v1/pages/products", tags=["pages"])
        async def products(_who: Principal = Depends(require("kiosk", "tablet"))) -> dict[str, Any]:
            """Products a kiosk lets the customer browse (the model's product catalog, first 200)."""
            return {"products": await asyncio.to_thread(self._products)}

        api.include_router(self.pairing.router())
        return api

    def _page(self, name: str) -> Response:
        body = self._files.get(f"{name}.html")
        if body is None:
            return JSONResponse({"error": "not_found", "detail": f"no page {name!r}"}, 404)
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": CSP,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
