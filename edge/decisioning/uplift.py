"""Uplift of treatment over holdout, per campaign (experiment), with a 95 % interval.

The unit of analysis is the experiment's unit (person or visit): a unit *converted* when at
least one of its exposures in that campaign was redeemed. Both arms are exposed (holdout
exposures are counterfactual: recorded, not shown), so the arms differ only by the offer.

* absolute uplift ``p_t − p_c`` with the Wald interval
  ``± z·√(p_t(1−p_t)/n_t + p_c(1−p_c)/n_c)``;
* relative uplift ``p_t / p_c − 1`` with the delta-method interval on ``log(p_t / p_c)``
  (absent while either arm has no conversion);
* the CUPED estimate of the absolute uplift (Deng, Xu, Kohavi & Walker 2013) with its interval:
  the covariate is a person's spend in the journal's ``Order Completed`` events in the
  :data:`PRE_PERIOD_DAYS` before the campaign first reached them (measured before the exposure,
  so it cannot be moved by the offer); it is applied when at least half the units (and at least
  ``edge.stats.MIN_UNITS``) have one — visit-only units have no pre-period and are not adjusted.
  It shrinks the interval by about ``sqrt(1 − ρ²)``; ``cuped_rho`` reports ρ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edge import stats
from edge.journal import Journal

__all__ = ["PRE_PERIOD_DAYS", "CampaignUplift", "format_report", "order_spend", "uplift", "uplift_report"]

Z95 = 1.959963984540054
#: The pre-period of the CUPED covariate: spend in this many days before the first exposure.
PRE_PERIOD_DAYS = 30
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class CampaignUplift:
    experiment: str
    treatment_units: int
    treatment_conversions: int
    holdout_units: int
    holdout_conversions: int
    treatment_rate: float | None
    holdout_rate: float | None
    absolute_uplift: float | None
    absolute_ci95: tuple[float, float] | None
    relative_uplift: float | None
    relative_ci95: tuple[float, float] | None
    cuped_applied: bool = False
    cuped_absolute_uplift: float | None = None
    cuped_absolute_ci95: tuple[float, float] | None = None
    cuped_theta: float = 0.0
    cuped_rho: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def uplift(experiment: str, n_t: int, x_t: int, n_c: int, x_c: int) -> CampaignUplift:
    p_t = x_t / n_t if n_t else None
    p_c = x_c / n_c if n_c else None
    absolute = abs_ci = relative = rel_ci = None
    if p_t is not None and p_c is not None:
        absolute = p_t - p_c
        half = Z95 * math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
        abs_ci = (absolute - half, absolute + half)
        if x_t and x_c:
            relative = p_t / p_c - 1
            se = math.sqrt((1 - p_t) / x_t + (1 - p_c) / x_c)
            log_ratio = math.log(p_t / p_c)
            rel_ci = (math.exp(log_ratio - Z95 * se) - 1, math.exp(log_ratio + Z95 * se) - 1)
    return CampaignUplift(experiment, n_t, x_t, n_c, x_c, p_t, p_c, absolute, abs_ci, relative, rel_ci)


def with_cuped(row: CampaignUplift, units: Sequence[tuple[str, bool, float | None]]) -> CampaignUplift:
    """``row`` with its CUPED estimate, from every unit's ``(arm, converted, pre-period spend)``."""
    ys = [1.0 if converted else 0.0 for _, converted, _ in units]
    xs = [spend for _, _, spend in units]
    treated = [a == "treatment" for a, _, _ in units]
    known = sum(x is not None for x in xs)
    if not (any(treated) and not all(treated)) or known < max(stats.MIN_UNITS, len(xs) // 2 + len(xs) % 2):
        return row
    adjusted, theta, rho = stats.cuped(ys, xs)
    t = stats.Sample.of([y for y, is_t in zip(adjusted, treated, strict=True) if is_t])
    c = stats.Sample.of([y for y, is_t in zip(adjusted, treated, strict=True) if not is_t])
    estimate = t.mean - c.mean
    half = Z95 * stats.standard_error(t, c)
    return CampaignUplift(
        **{
            **asdict(row),
            "cuped_applied": True,
            "cuped_absolute_uplift": estimate,
            "cuped_absolute_ci95": (estimate - half, estimate + half),
            "cuped_theta": theta,
            "cuped_rho": rho,
        }
    )


def order_spend(body: str) -> float:
    """What an ``Order Completed`` event spent: its lines' ``price × quantity`` (the layout
    attribution reads), else ``properties.revenue`` or ``total``; 0 when it says nothing usable."""
    try:
        props = json.loads(body).get("properties") or {}
    except (ValueError, AttributeError):
        return 0.0
    if not isinstance(props, Mapping):
        return 0.0
    lines = props.get("products")
    if isinstance(lines, list) and lines:
        return sum(
            _num(line.get("price")) * _num(line.get("quantity"), 1.0) for line in lines if isinstance(line, Mapping)
        )
    return _num(props.get("revenue", props.get("total")))


def _num(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


def uplift_report(journal: Journal) -> list[CampaignUplift]:
    with journal.connection() as conn:
        exposed = conn.execute(
            "SELECT experiment, arm, unit_key, MAX(user_id), MIN(ms) FROM exposures GROUP BY 1, 2, 3"
        ).fetchall()
        converted = set(conn.execute("SELECT DISTINCT experiment, arm, unit_key FROM redemptions").fetchall())
    orders: dict[str, list[tuple[int, float]]] = {}
    for user_id, ms, body in journal.events_of([u for *_, u, _ in exposed if u], "Order Completed"):
        orders.setdefault(user_id, []).append((ms, order_spend(body)))

    def pre_spend(user_id: str | None, first_ms: int) -> float | None:
        if not user_id:
            return None
        start = first_ms - PRE_PERIOD_DAYS * _DAY_MS
        return round(sum(v for ms, v in orders.get(user_id, ()) if start <= ms < first_ms), 4)

    by_experiment: dict[str, list[tuple[str, bool, float | None]]] = {}
    for exp, arm, unit, user_id, first_ms in exposed:
        by_experiment.setdefault(exp, []).append((arm, (exp, arm, unit) in converted, pre_spend(user_id, first_ms)))
    out = []
    for exp in sorted(by_experiment):
        units = by_experiment[exp]
        n = {a: sum(1 for arm, _, _ in units if arm == a) for a in ("treatment", "holdout")}
        x = {a: sum(1 for arm, conv, _ in units if arm == a and conv) for a in ("treatment", "holdout")}
        row = uplift(exp, n["treatment"], x["treatment"], n["holdout"], x["holdout"])
        out.append(with_cuped(row, [u for u in units if u[0] in ("treatment", "holdout")]))
    return out


def format_report(rows: list[CampaignUplift]) -> str:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:+.2f}"

    def rate(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f}%"

    def interval(ci: tuple[float, float] | None) -> str:
        return "—" if ci is None else f"[{pct(ci[0])}, {pct(ci[1])}]"

    lines = [
        f"{'campaign':<24} {'treatment':>18} {'holdout':>18} {'uplift pts':>11} {'95% CI pts':>19} {'relative %':>11}"
        f" {'CUPED 95% CI pts':>19}"
    ]
    for r in rows:
        lines.append(
            f"{r.experiment[:24]:<24} {rate(r.treatment_rate):>8} of {r.treatment_units:<6}"
            f" {rate(r.holdout_rate):>8} of {r.holdout_units:<6} {pct(r.absolute_uplift):>11}"
            f" {interval(r.absolute_ci95):>19} {pct(r.relative_uplift):>11} {interval(r.cuped_absolute_ci95):>19}"
        )
    return "\n".join(lines)
