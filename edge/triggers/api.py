"""``GET /v1/reports/triggers`` (role ops): the test-and-learn report (see edge.triggers.report)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from edge.auth import Principal, require

__all__ = ["Reporting", "TriggersReport", "router"]


class Reporting(Protocol):
    """What the report route uses of the triggers feature (its component is one)."""

    def report(self) -> dict[str, Any]: ...


class Uplift(BaseModel):
    estimate: float | None
    low: float | None
    high: float | None


class VariantRow(BaseModel):
    variant: str
    fired: int
    delivered: int
    measured: int
    conversions: int
    conversionRate: float | None
    uplift: Uplift
    probabilityBest: float
    verdict: str


class Promotion(BaseModel):
    variant: str
    minHoldout: float
    promotedAt: str


class Cuped(BaseModel):
    applied: bool
    theta: float
    rho: float


class TriggerRow(BaseModel):
    trigger: str
    version: int
    promoted: Promotion | None
    heldOut: int
    holdoutConversions: int
    holdoutRate: float | None
    cuped: Cuped
    alpha: float
    variants: list[VariantRow]


class TriggersReport(BaseModel):
    """Per trigger and version: the holdout, then each variant's firings, conversions, uplift over
    the holdout with its always-valid interval (read it any time), P(best) and the verdict
    (keep learning / promote / retire, or promoted / retired after `edge triggers promote`)."""

    generatedAt: str
    triggers: list[TriggerRow]


def router(component: Reporting) -> APIRouter:
    api = APIRouter(tags=["triggers"])

    @api.get("/v1/reports/triggers", response_model=TriggersReport)
    async def triggers_report(principal: Principal = Depends(require("ops"))) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, component.report)

    return api
